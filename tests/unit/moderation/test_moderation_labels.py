import math

import pytest

from schemas.moderation import CATEGORIES, Sentiment
from services.moderation.model.labels import HEAD_LABELS, decode


def test_head_layout_is_categories_then_sentiment():
    assert HEAD_LABELS[: len(CATEGORIES)] == tuple(CATEGORIES)
    assert HEAD_LABELS[len(CATEGORIES):] == (
        "sentiment:negative", "sentiment:neutral", "sentiment:positive",
    )


def test_decode_sigmoid_for_categories_softmax_for_sentiment():
    logits = [0.0, 2.0, -2.0, 50.0, -50.0, 0.0, 0.0, 1.0, 3.0, 1.0]
    out = decode(logits)
    assert out.scores["toxicity"] == pytest.approx(0.5)
    assert out.scores["severe_toxicity"] == pytest.approx(1 / (1 + math.exp(-2)))
    assert out.scores["threat"] == pytest.approx(1.0)
    assert out.scores["identity_attack"] == pytest.approx(0.0, abs=1e-12)
    assert set(out.scores) == set(CATEGORIES)
    assert out.sentiment is Sentiment.neutral
    assert sum(out.sentiment_scores.values()) == pytest.approx(1.0)
    assert out.sentiment_scores[Sentiment.negative] == pytest.approx(
        out.sentiment_scores[Sentiment.positive])


def test_decode_rejects_wrong_width():
    with pytest.raises(ValueError):
        decode([0.0] * 7)
