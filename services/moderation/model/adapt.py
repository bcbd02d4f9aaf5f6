"""Adapt a head to one community from its moderators' decisions.

For every category the community's examples label both ways, a logistic regression is
fitted on the message embedding plus the base head's logit for that category. The base
logit is one cheap feature, so with few examples the fit leans on the general model and
only moves where the community disagrees with it; with more it learns the community's own
notion of harm. Both parts are linear in the embedding, so the result folds back into a
plain :class:`~.heads.LinearHead`: an adapted bundle is served exactly like its base.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from schemas.moderation import CATEGORIES
from services.moderation.model.evaluation import category_metrics
from services.moderation.model.heads import LinearHead
from services.moderation.model.seed import SeedExample

# Chosen on the leave-one-domain-out adaptation runs of bench/generalization.py.
ADAPT_C = 1.0
MIN_PER_CLASS = 5  # fewer examples of either class than this: the category keeps its base


def labelled_categories(examples: Sequence[SeedExample], min_per_class: int = MIN_PER_CLASS) -> list[str]:
    """Categories the examples can teach: enough of them harmful and enough not."""
    found = []
    for category in CATEGORIES:
        positives = sum(category in ex.labels for ex in examples)
        if positives >= min_per_class and len(examples) - positives >= min_per_class:
            found.append(category)
    return found


def adapt_head(base: LinearHead, embeddings: np.ndarray, examples: Sequence[SeedExample], *,
               c: float = ADAPT_C, min_per_class: int = MIN_PER_CLASS) -> LinearHead:
    from sklearn.linear_model import LogisticRegression

    base_logits = base.logits(embeddings)
    weight, bias = base.weight.copy(), base.bias.copy()
    for category in labelled_categories(examples, min_per_class):
        col = CATEGORIES.index(category)
        y = np.array([int(category in ex.labels) for ex in examples])
        features = np.hstack([embeddings, base_logits[:, [col]]])
        model = LogisticRegression(C=c, max_iter=2000).fit(features, y)
        coef, trust = model.coef_[0][:-1], model.coef_[0][-1]
        # w.e + trust * (W.e + b) + b0  ==  (w + trust W).e + (trust b + b0)
        weight[:, col] = coef + trust * base.weight[:, col]
        bias[col] = model.intercept_[0] + trust * base.bias[col]
    return LinearHead(weight=weight.astype(np.float32), bias=bias.astype(np.float32))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def false_positives_at_recall(labels: np.ndarray, base: np.ndarray, adapted: np.ndarray,
                              threshold: float) -> dict:
    """False positives of the base at ``threshold``, and of the adapted scores at the
    threshold that keeps at least the base's recall: the same harm caught, fewer alerts."""
    positives = labels == 1
    base_hits = base >= threshold
    recall = float(base_hits[positives].mean()) if positives.any() else 0.0
    need = int(np.ceil(recall * positives.sum()))
    ranked = np.sort(adapted[positives])[::-1]
    cut = ranked[need - 1] if need else np.inf
    return {
        "base_threshold": threshold,
        "recall": round(recall, 4),
        "base_false_positives": int((base_hits & ~positives).sum()),
        "adapted_threshold": None if need == 0 else round(float(cut), 4),
        "adapted_false_positives": int(((adapted >= cut) & ~positives).sum()),
        "negatives": int((~positives).sum()),
    }


def cross_validate(base: LinearHead, embeddings: np.ndarray, examples: Sequence[SeedExample], *,
                   folds: int = 5, threshold: float = 0.5, seed: int = 0,
                   c: float = ADAPT_C) -> dict[str, dict]:
    """Out-of-fold scores of the adapted head against the base, per adaptable category:
    ROC-AUC of both and the false positives at equal recall (what a moderator would see)."""
    categories = labelled_categories(examples)
    order = np.random.default_rng(seed).permutation(len(examples))
    out_of_fold = np.zeros((len(examples), len(CATEGORIES)))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        head = adapt_head(base, embeddings[train], [examples[i] for i in train], c=c)
        out_of_fold[test] = head.logits(embeddings[test])[:, :len(CATEGORIES)]
    base_scores = _sigmoid(base.logits(embeddings)[:, :len(CATEGORIES)])
    adapted_scores = _sigmoid(out_of_fold)
    report = {}
    for category in categories:
        col = CATEGORIES.index(category)
        y = np.array([int(category in ex.labels) for ex in examples])
        report[category] = {
            "positives": int(y.sum()),
            "negatives": int(len(y) - y.sum()),
            "base_roc_auc": category_metrics(y.tolist(), base_scores[:, col].tolist())["roc_auc"],
            "adapted_roc_auc": category_metrics(y.tolist(), adapted_scores[:, col].tolist())["roc_auc"],
            **false_positives_at_recall(y, base_scores[:, col], adapted_scores[:, col], threshold),
        }
    return report
