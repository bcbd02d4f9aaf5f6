"""Head bundles: a :class:`~.heads.LinearHead` on the shared frozen encoder.

Stored as ``<model cache>/heads/<name>/<version>/`` with ``bundle.json`` and ``head.npz``
(a few kilobytes: the encoder is not copied). Versions count 1, 2, 3 ... per name and are
never overwritten, so a policy that pins ``model: acme@3`` keeps getting exactly the head
it was reviewed with, and every verdict names the head that scored it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas.moderation import CATEGORIES
from services.moderation.model.encoder import ENCODER_RECIPE, SentenceEncoder
from services.moderation.model.heads import LinearHead
from services.moderation.model.labels import HEAD_LABELS, SENTIMENTS
from services.moderation.model.runner import BundleRunner
from services.moderation.model.train import (
    BASE_MODEL,
    BASE_PACKAGE,
    CARD_FILE,
    BundleCard,
)
from services.moderation.policy.model import BUNDLE_NAME, BUNDLE_REF

HEADS = "heads"
HEAD_FILE = "head.npz"
NAME = re.compile(rf"^{BUNDLE_NAME}$")
REF = re.compile(BUNDLE_REF)  # one definition with the policy's ``model:`` field


class BundleNotFound(LookupError):
    pass


def parse_ref(ref: str) -> tuple[str, int]:
    """``"acme@3"`` -> ``("acme", 3)``."""
    match = REF.match(ref)
    if not match:
        raise ValueError(f"not a head bundle reference (name@version, e.g. acme@3): {ref!r}")
    return match["name"], int(match["version"])


def versions(cache: Path, name: str) -> list[int]:
    folder = Path(cache) / HEADS / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir()
                  if p.name.isdigit() and (p / CARD_FILE).is_file())


def head_path(cache: Path, ref: str) -> Path:
    name, version = parse_ref(ref)
    path = Path(cache) / HEADS / name / str(version)
    if not (path / CARD_FILE).is_file():
        known = ", ".join(f"{name}@{v}" for v in versions(cache, name)) or "none"
        raise BundleNotFound(f"head bundle {ref} is not in {Path(cache) / HEADS} (versions there: {known})")
    return path


def latest_ref(cache: Path, name: str) -> str | None:
    found = versions(cache, name)
    return f"{name}@{found[-1]}" if found else None


def write_head_bundle(cache: Path, name: str, head: LinearHead, *, train_size: int,
                      data_hash: str, metrics: dict, training: dict, base: str | None = None,
                      community: str | None = None, data_files: list[str] | None = None,
                      heldout_size: int = 0) -> tuple[Path, BundleCard]:
    """Write the next version of ``name``; returns its folder and card."""
    import torch
    import transformers

    if not NAME.match(name):
        raise ValueError(f"bundle name {name!r}: use lowercase letters, digits, '.', '_' or '-'")
    folder = Path(cache) / HEADS / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
    try:
        head.save(tmp / HEAD_FILE)
        while True:  # another writer may take a number first: rename is atomic, so retry
            version = (versions(cache, name) or [0])[-1] + 1
            card = BundleCard(
                name=name, version=str(version), base_model=BASE_MODEL, base_package=BASE_PACKAGE,
                base_package_version=importlib.metadata.version(BASE_PACKAGE),
                labels=list(HEAD_LABELS), categories=list(CATEGORIES),
                sentiments=[s.value for s in SENTIMENTS],
                sentiment_decoding="as steward-default: sigmoid per category, softmax over sentiment",
                thresholds={c: 0.5 for c in CATEGORIES}, seed_data_hash=data_hash,
                training=training, train_size=train_size, heldout_size=heldout_size,
                metrics=metrics, build_seconds=training.get("seconds", 0.0),
                built_at=datetime.now(UTC).isoformat(timespec="seconds"),
                torch_version=torch.__version__, transformers_version=transformers.__version__,
                data_files=data_files, kind="head", encoder=ENCODER_RECIPE, base=base,
                community=community,
            )
            (tmp / CARD_FILE).write_text(card.model_dump_json(indent=2), encoding="utf-8")
            target = folder / str(version)
            try:
                os.rename(tmp, target)  # fails if the folder exists and is not empty
            except OSError:
                if target.exists():
                    continue
                raise
            return target, card
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_head(path: Path) -> tuple[LinearHead, BundleCard]:
    card = BundleCard.model_validate_json((Path(path) / CARD_FILE).read_text(encoding="utf-8"))
    if card.kind != "head":
        raise ValueError(f"{path} is a {card.kind} bundle, not a head bundle")
    if card.encoder != ENCODER_RECIPE:
        raise ValueError(f"{path} was trained on encoder {card.encoder!r}; this build serves {ENCODER_RECIPE!r}")
    return LinearHead.load(Path(path) / HEAD_FILE), card


class HeadClassifier(BundleRunner):
    """Scores with the shared encoder and one head; many can share one encoder."""

    def __init__(self, encoder: SentenceEncoder, head: LinearHead, card: BundleCard):
        self.encoder = encoder
        self.head = head
        self.card = card

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @classmethod
    def load(cls, path: Path, encoder: SentenceEncoder) -> HeadClassifier:
        head, card = read_head(path)
        return cls(encoder, head, card)

    def logits(self, texts: list[str]) -> np.ndarray:
        return self.head.logits(self.encoder.embed(texts))
