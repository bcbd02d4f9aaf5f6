"""Load a bundle offline and score texts with it."""

from __future__ import annotations

from pathlib import Path

import torch

from services.moderation.model.bundle import read_card
from services.moderation.model.labels import HEAD_LABELS
from services.moderation.model.runner import BundleRunner, length_sorted_batches
from services.moderation.model.train import BundleCard


class Classifier(BundleRunner):
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

    def logits(self, texts: list[str]) -> torch.Tensor:
        out = torch.empty(len(texts), len(HEAD_LABELS))
        with torch.inference_mode():
            for idx in length_sorted_batches(texts, self.batch_size):
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                out[idx] = self.model(**enc).logits.float()
        return out
