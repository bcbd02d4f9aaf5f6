"""The moderation model: seed data, training, the bundle on disk and the runtime classifier.

Names are resolved on first use: importing a light submodule (seed data, label mapping) or a
command that never touches the model must not pay for importing torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "default_bundle_dir": "bundle",
    "ensure_default_bundle": "bundle",
    "ensure_serving_bundle": "bundle",
    "load_classifier": "bundle",
    "read_card": "bundle",
    "Classifier": "classifier",
    "HEAD_LABELS": "labels",
    "TextScores": "labels",
    "decode": "labels",
    "BundleCard": "train",
    "TrainConfig": "train",
    "build_bundle": "train",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
