"""The moderation model: seed data, training, the bundle on disk and the runtime classifier."""

from services.moderation.model.bundle import (
    default_bundle_dir,
    ensure_default_bundle,
    ensure_serving_bundle,
    load_classifier,
    read_card,
)
from services.moderation.model.classifier import Classifier
from services.moderation.model.labels import HEAD_LABELS, TextScores, decode
from services.moderation.model.train import BundleCard, TrainConfig, build_bundle

__all__ = [
    "HEAD_LABELS", "BundleCard", "Classifier", "TextScores", "TrainConfig", "build_bundle",
    "decode", "default_bundle_dir", "ensure_default_bundle", "ensure_serving_bundle",
    "load_classifier", "read_card",
]
