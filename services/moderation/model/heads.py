"""Linear heads on frozen sentence embeddings, and how they are fitted.

A head maps an embedding (plus, for a community adapter, the base model's logits) to the
``HEAD_LABELS`` logits: one logistic regression per category and a multinomial one for
sentiment. Fitting takes seconds on CPU, so a head can be refitted per community from a
few hundred moderator decisions.

Rows carry a weight. Training sets are mixed from sources of very different size and label
balance (24,000 tweets three quarters offensive next to 1,000 forum comments); weighting
each source equally and balancing its classes keeps the head from learning "looks like the
biggest source" instead of "is harmful", which is what does not transfer to a new
community (see bench/generalization.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.moderation import CATEGORIES
from services.moderation.model.labels import HEAD_LABELS, N_CATEGORIES, SENTIMENTS
from services.moderation.model.seed import SeedExample

# The logit of a category that no training row had: it reads as "no evidence" (0.002).
ABSENT_LOGIT = -6.0


@dataclass(frozen=True)
class LinearHead:
    weight: np.ndarray  # (features, len(HEAD_LABELS))
    bias: np.ndarray  # (len(HEAD_LABELS),)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight + self.bias

    def save(self, path: Path) -> None:
        np.savez(path, weight=self.weight, bias=self.bias, labels=np.array(HEAD_LABELS))

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        with np.load(path, allow_pickle=False) as data:
            if tuple(data["labels"].tolist()) != HEAD_LABELS:
                raise ValueError(f"{path}: head labels {data['labels'].tolist()} do not match {HEAD_LABELS}")
            return cls(weight=data["weight"].astype(np.float32), bias=data["bias"].astype(np.float32))


def source_weights(examples: Sequence[SeedExample], source_of=lambda ex: ex.group.split(":")[0],
                   category: str | None = None) -> np.ndarray:
    """Every source the same total weight; within a source, when ``category`` is given, its
    positives and negatives half each (a source with one class keeps its whole share).
    Normalised to mean 1 so the regularisation strength means the same for any set."""
    sources = [source_of(ex) for ex in examples]
    names = sorted(set(sources))
    weights = np.zeros(len(examples))
    for name in names:
        idx = [i for i, s in enumerate(sources) if s == name]
        if category is None:
            weights[idx] = 1 / len(idx)
            continue
        pos = [i for i in idx if category in examples[i].labels]
        neg = [i for i in idx if category not in examples[i].labels]
        for part in (pos, neg):
            if part:
                weights[part] = (0.5 if pos and neg else 1.0) / len(part)
    return weights * len(weights) / weights.sum()


def fit_head(features: np.ndarray, examples: Sequence[SeedExample], *,
             sentiment_rows: np.ndarray | None = None, weights_for=source_weights,
             c: float = 1.0, categories: Sequence[str] = CATEGORIES) -> LinearHead:
    """One logistic regression per category (and a softmax one for sentiment).

    ``sentiment_rows`` marks the rows whose sentiment label is real; rows from sets
    without one (their label defaults to neutral) would otherwise teach "always neutral".
    ``c`` is scikit-learn's inverse regularisation strength; rows of weight 0 for a
    category do not teach it; ``categories`` limits the fit (the rest read as absent)."""
    from sklearn.linear_model import LogisticRegression

    dim = features.shape[1]
    weight = np.zeros((dim, len(HEAD_LABELS)), dtype=np.float32)
    bias = np.full(len(HEAD_LABELS), ABSENT_LOGIT, dtype=np.float32)
    for category in categories:
        c_idx = CATEGORIES.index(category)
        y = np.array([int(category in ex.labels) for ex in examples])
        weights = weights_for(examples, category=category)
        if 0 < y[weights > 0].sum() < (weights > 0).sum():
            model = LogisticRegression(C=c, max_iter=2000)
            model.fit(features, y, sample_weight=weights)
            weight[:, c_idx] = model.coef_[0]
            bias[c_idx] = model.intercept_[0]
    rows = np.arange(len(examples)) if sentiment_rows is None else np.flatnonzero(sentiment_rows)
    if len(rows):
        y = np.array([SENTIMENTS.index(examples[i].sentiment) for i in rows])
        if len(set(y.tolist())) == len(SENTIMENTS):
            model = LogisticRegression(C=c, max_iter=2000)
            subset = [examples[i] for i in rows]
            model.fit(features[rows], y, sample_weight=weights_for(subset))
            weight[:, N_CATEGORIES:] = model.coef_.T
            bias[N_CATEGORIES:] = model.intercept_
        else:
            bias[N_CATEGORIES:] = 0.0  # no sentiment evidence: a flat, "neutral" reading
    return LinearHead(weight=weight, bias=bias)
