"""Per-category quality metrics of a classifier on labeled examples.

Works with anything that has ``classify(texts) -> list[TextScores]`` (the torch
:class:`~.classifier.Classifier`, the :class:`~.onnx_runner.OnnxClassifier`, or a fake).
Per category: ROC-AUC, PR-AUC (average precision, the step-wise sum used by scikit-learn),
precision / recall / F1 at the threshold, and the expected calibration error over equal
width probability bins. A category with no positive examples reports None for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from schemas.moderation import CATEGORIES
from services.moderation.model.labels import TextScores
from services.moderation.model.seed import SeedExample
from services.moderation.model.train import roc_auc

ECE_BINS = 10


class SupportsClassify(Protocol):
    def classify(self, texts: list[str]) -> list[TextScores]: ...


def average_precision(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Sum over distinct score thresholds (high to low) of (recall gain) * precision."""
    n_pos = sum(labels)
    if n_pos == 0:
        return None
    pairs = sorted(zip(scores, labels), key=lambda p: -p[0])
    ap, tp, seen, prev_recall, i = 0.0, 0, 0, 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:  # ties form one threshold
            tp += pairs[j][1]
            j += 1
        seen = j
        recall = tp / n_pos
        ap += (recall - prev_recall) * (tp / seen)
        prev_recall = recall
        i = j
    return ap


def expected_calibration_error(labels: Sequence[int], scores: Sequence[float],
                               bins: int = ECE_BINS) -> float | None:
    """Sum over equal-width bins of (bin share) * |positive rate - mean score|."""
    if not labels:
        return None
    counts = [0] * bins
    pos = [0.0] * bins
    conf = [0.0] * bins
    for y, p in zip(labels, scores):
        b = min(int(p * bins), bins - 1)
        counts[b] += 1
        pos[b] += y
        conf[b] += p
    n = len(labels)
    return sum(c / n * abs(pos[b] / c - conf[b] / c) for b, c in enumerate(counts) if c)


def f1_at(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, float | None]:
    pred = [int(s >= threshold) for s in scores]
    tp = sum(1 for y, p in zip(labels, pred) if y and p)
    fp = sum(1 for y, p in zip(labels, pred) if p and not y)
    fn = sum(1 for y, p in zip(labels, pred) if y and not p)
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None,
    }


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def category_metrics(labels: Sequence[int], scores: Sequence[float],
                     threshold: float = 0.5) -> dict[str, Any]:
    n_pos = sum(labels)
    out: dict[str, Any] = {"positives": n_pos, "negatives": len(labels) - n_pos}
    if n_pos == 0:
        return out | {"roc_auc": None, "pr_auc": None, "precision": None, "recall": None,
                      "f1": None, "ece": None}
    at = f1_at(labels, scores, threshold)
    return out | {
        "roc_auc": _round(roc_auc(labels, scores)),
        "pr_auc": _round(average_precision(labels, scores)),
        "precision": _round(at["precision"]),
        "recall": _round(at["recall"]),
        "f1": _round(at["f1"]),
        "ece": _round(expected_calibration_error(labels, scores)),
    }


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float | None:
    """Mean over the classes present in ``gold`` of each class's F1."""
    classes = sorted(set(gold))
    if not classes:
        return None
    scores = []
    for c in classes:
        tp = sum(1 for g, p in zip(gold, predicted) if g == c and p == c)
        wrong = sum(1 for g, p in zip(gold, predicted) if (g == c) != (p == c))
        scores.append(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
    return sum(scores) / len(scores)


def evaluate_scores(examples: Sequence[SeedExample], scores: Sequence[TextScores],
                    threshold: float = 0.5) -> dict[str, Any]:
    if len(examples) != len(scores):
        raise ValueError(f"{len(examples)} examples but {len(scores)} score rows")
    per_cat = {}
    for cat in CATEGORIES:
        y = [int(cat in ex.labels) for ex in examples]
        p = [float(s.scores[cat]) for s in scores]
        per_cat[cat] = category_metrics(y, p, threshold)
    sent_ok = sum(s.sentiment == ex.sentiment for s, ex in zip(scores, examples))
    return {
        "examples": len(examples),
        "threshold": threshold,
        "categories": per_cat,
        "macro": {k: _mean([m[k] for m in per_cat.values()])
                  for k in ("roc_auc", "pr_auc", "f1", "ece")},
        "sentiment_accuracy": round(sent_ok / len(examples), 4) if examples else None,
        "sentiment_macro_f1": _round(macro_f1([ex.sentiment.value for ex in examples],
                                              [s.sentiment.value for s in scores])),
    }


def evaluate_classifier(classifier: SupportsClassify, examples: Sequence[SeedExample],
                        threshold: float = 0.5) -> dict[str, Any]:
    """Score ``examples`` with ``classifier`` and compute :func:`evaluate_scores`."""
    scores = classifier.classify([ex.text for ex in examples]) if examples else []
    return evaluate_scores(examples, scores, threshold)
