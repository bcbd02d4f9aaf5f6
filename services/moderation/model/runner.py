"""What the torch and ONNX Runtime classifiers share: identity from the card, length-sorted
batching, and decoding logits into scores. Each runner only says how a batch is scored."""

from __future__ import annotations

import time
from collections.abc import Iterator

from services.moderation.model.labels import TextScores, decode
from services.moderation.model.train import BundleCard


def truncated_indices(tokenizer, texts: list[str], max_length: int) -> set[int]:
    """Indices of the texts with more than ``max_length`` tokens (special tokens included).
    A word-piece covers at least one character, so only longer texts are tokenized again."""
    long = [i for i, text in enumerate(texts) if len(text) > max_length - 2]
    if not long:
        return set()
    # One token past the limit is enough to know, and keeps the tokenizer from warning.
    counts = tokenizer([texts[i] for i in long], truncation=True, max_length=max_length + 1)["input_ids"]
    return {i for i, ids in zip(long, counts, strict=True) if len(ids) > max_length}


def length_sorted_batches(texts: list[str], size: int) -> Iterator[list[int]]:
    """Indices of ``texts`` in batches of similar length: less padding per batch. The
    caller writes each batch's rows back at these indices, so input order is kept."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), size):
        yield order[start : start + size]


class BundleRunner:
    card: BundleCard
    tokenizer: object
    max_length: int

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def logits(self, texts: list[str]):
        raise NotImplementedError

    def classify(self, texts: list[str]) -> list[TextScores]:
        truncated = truncated_indices(self.tokenizer, texts, self.max_length)
        return [decode(row, i in truncated) for i, row in enumerate(self.logits(texts).tolist())]

    def classify_timed(self, texts: list[str]) -> tuple[list[TextScores], float]:
        """Scores plus the model time per text in milliseconds (the batch's wall time
        shared evenly, which is what a verdict's ``latency_ms`` can honestly claim)."""
        started = time.perf_counter()
        scores = self.classify(texts)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return scores, elapsed_ms / max(len(texts), 1)
