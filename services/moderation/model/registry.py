"""Which model scores which community: the service's default, or the head bundle that the
community's policy pins (``model: acme@3``).

Head bundles share one frozen encoder, loaded on first use; a batch is split by model, so
each text still passes through one model only. A pinned bundle that cannot be loaded is
not fatal: that community is scored by the default model, its verdicts name the default,
the error is logged, and the load is tried again after ``retry_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from services.moderation.model.head_bundle import (
    BundleNotFound,
    HeadClassifier,
    head_path,
)
from services.moderation.model.labels import TextScores

log = logging.getLogger("steward.moderation.models")


class ModelRegistry:
    def __init__(self, default, cache: Path, *, threads: int = 2, retry_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_fallback: Callable[[str], None] | None = None,
                 load_encoder: Callable[[], object] | None = None):
        self.default = default
        self.cache = Path(cache)
        self.threads = threads
        self.retry_s = retry_s
        self._clock = clock
        self._on_fallback = on_fallback or (lambda _ref: None)
        self._load_encoder = load_encoder or self._shared_encoder
        self._encoder = None
        self._heads: dict[str, HeadClassifier] = {}
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def _shared_encoder(self):
        from services.moderation.model.encoder import SentenceEncoder

        return SentenceEncoder.load(self.cache, threads=self.threads)

    def _load(self, ref: str) -> HeadClassifier:
        path = head_path(self.cache, ref)
        if self._encoder is None:
            self._encoder = self._load_encoder()
        return HeadClassifier.load(path, self._encoder)

    def pinned(self, ref: str | None):
        """The model a policy pins, loaded now; unlike :meth:`resolve`, a missing bundle
        is an error (for tools such as replay, where a silent fallback would mislead)."""
        if ref is None:
            return self.default
        with self._lock:
            if ref not in self._heads:
                self._heads[ref] = self._load(ref)
            return self._heads[ref]

    def resolve(self, ref: str | None):
        if ref is None:
            return self.default
        with self._lock:
            if ref in self._heads:
                return self._heads[ref]
            failed = self._failed_at.get(ref)
            if failed is None or self._clock() - failed >= self.retry_s:
                try:
                    self._heads[ref] = self._load(ref)
                    self._failed_at.pop(ref, None)
                    log.info("head bundle %s loaded", ref)
                    return self._heads[ref]
                except (BundleNotFound, ValueError, OSError) as error:
                    self._failed_at[ref] = self._clock()
                    log.error("cannot load head bundle %s, its communities use %s %s: %s",
                              ref, self.default.name, self.default.version, error)
        self._on_fallback(ref)
        return self.default

    def classify_timed(self, texts: list[str], refs: list[str | None]
                       ) -> tuple[list[TextScores], list, list[float]]:
        """Scores, the model that gave each, and each text's model time in ms."""
        models = [self.resolve(ref) for ref in refs]
        readings: list[TextScores | None] = [None] * len(texts)
        per_text_ms = [0.0] * len(texts)
        groups: dict[int, list[int]] = {}
        for i, model in enumerate(models):
            groups.setdefault(id(model), []).append(i)
        for idx in groups.values():
            scores, ms = models[idx[0]].classify_timed([texts[i] for i in idx])
            for i, score in zip(idx, scores, strict=True):
                readings[i], per_text_ms[i] = score, ms
        return readings, models, per_text_ms  # type: ignore[return-value]
