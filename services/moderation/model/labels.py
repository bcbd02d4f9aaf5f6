"""The head's output layout and how raw logits become scores.

One linear head of ``len(HEAD_LABELS)`` logits:
- the first seven are the moderation categories, each an independent sigmoid (a message
  can be toxic, insulting and threatening at once);
- the last three are sentiment, decoded with a softmax over just those three. Sentiment is
  one of three mutually exclusive classes, so a softmax gives a proper distribution that
  sums to 1 (two independent sigmoids for positive/negative would need an invented rule
  for "neutral" and could both be high).

The saved config says ``problem_type="multi_label_classification"`` so that generic HF
tooling loads it; such tooling would apply a sigmoid to the sentiment logits too, which is
wrong: use :func:`decode` (or :class:`~.classifier.Classifier`) to read the outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.moderation import CATEGORIES, Sentiment

SENTIMENTS: tuple[Sentiment, ...] = (Sentiment.negative, Sentiment.neutral, Sentiment.positive)
SENTIMENT_PREFIX = "sentiment:"
HEAD_LABELS: tuple[str, ...] = tuple(CATEGORIES) + tuple(
    f"{SENTIMENT_PREFIX}{s.value}" for s in SENTIMENTS
)
N_CATEGORIES = len(CATEGORIES)


@dataclass(frozen=True, slots=True)
class TextScores:
    scores: dict[str, float]
    sentiment: Sentiment
    sentiment_scores: dict[Sentiment, float]
    truncated: bool = False  # longer than the model reads: only its first tokens were scored


def _sigmoid(x: float) -> float:
    # split by sign so that large |x| never overflows exp()
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def decode(logits: Sequence[float], truncated: bool = False) -> TextScores:
    """Turn one row of head logits (in ``HEAD_LABELS`` order) into scores."""
    if len(logits) != len(HEAD_LABELS):
        raise ValueError(f"expected {len(HEAD_LABELS)} logits, got {len(logits)}")
    scores = {c: _sigmoid(float(x)) for c, x in zip(CATEGORIES, logits[:N_CATEGORIES])}
    sent = [float(x) for x in logits[N_CATEGORIES:]]
    top = max(sent)
    exps = [math.exp(x - top) for x in sent]
    total = sum(exps)
    sentiment_scores = {s: e / total for s, e in zip(SENTIMENTS, exps)}
    best = max(SENTIMENTS, key=sentiment_scores.__getitem__)
    return TextScores(scores, best, sentiment_scores, truncated)
