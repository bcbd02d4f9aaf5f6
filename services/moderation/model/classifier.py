"""Load a bundle offline and score texts with it."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from services.moderation.model.bundle import read_card
from services.moderation.model.labels import HEAD_LABELS, TextScores, decode
from services.moderation.model.train import BundleCard


class Classifier:
    """One loaded bundle. Not thread-safe for concurrent ``classify`` calls; load once per
    process and call from one worker (torch already uses several cores per call)."""

    def __init__(self, model, tokenizer, card: BundleCard, *, max_length: int = 128,
                 batch_size: int = 32):
        labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
        if labels != HEAD_LABELS:
            raise ValueError(f"bundle head labels {labels} do not match {HEAD_LABELS}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.card = card
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: Path, *, threads: int | None = None, max_length: int = 128,
             batch_size: int = 32) -> Classifier:
        """Load from a local folder only; ``threads`` sets torch's (process-wide) pool."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        path = Path(path)
        card = read_card(path)  # fails early on a folder that is not a steward bundle
        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, card, max_length=max_length, batch_size=batch_size)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def logits(self, texts: list[str]) -> torch.Tensor:
        out = torch.empty(len(texts), len(HEAD_LABELS))
        # Length-sorted batches carry less padding; rows are put back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                out[idx] = self.model(**enc).logits.float()
        return out

    def classify(self, texts: list[str]) -> list[TextScores]:
        return [decode(row) for row in self.logits(texts).tolist()]

    def classify_timed(self, texts: list[str]) -> tuple[list[TextScores], float]:
        """Scores plus the model time per text in milliseconds (the batch's wall time
        shared evenly, which is what a verdict's ``latency_ms`` can honestly claim)."""
        started = time.perf_counter()
        scores = self.classify(texts)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return scores, elapsed_ms / max(len(texts), 1)
