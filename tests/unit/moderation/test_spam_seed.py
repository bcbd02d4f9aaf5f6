"""The spam seed data (seed_spam.txt) and the project's held-out spam set (spam_heldout.jsonl)."""

import json
import re
from collections import Counter

import pytest

from schemas.moderation import CATEGORIES, Sentiment
from services.moderation.model import seed
from services.moderation.model.seed import (
    BENIGN_LOOKALIKE_KINDS,
    SPAM_HELDOUT_FILE,
    SPAM_KINDS,
    seed_examples,
    spam_heldout,
)


def _norm(text: str) -> str:
    """Lower case, punctuation and emoji dropped, whitespace collapsed."""
    return " ".join(re.findall(r"[a-z0-9@]+", text.lower()))


def _jaccard(a: str, b: str) -> float:
    x, y = set(_norm(a).split()), set(_norm(b).split())
    return len(x & y) / len(x | y) if x | y else 1.0


def test_every_spam_kind_is_in_the_seed_with_handwritten_lines():
    examples = seed_examples()
    handwritten = Counter(ex.kind for ex in examples
                          if ex.handwritten and ex.group.startswith("spam:"))
    for kind in SPAM_KINDS:
        assert handwritten[kind] >= 20, kind
    for kind in BENIGN_LOOKALIKE_KINDS:
        assert handwritten[kind] >= 10, kind
    for ex in examples:
        if ex.kind in SPAM_KINDS:
            assert ex.labels == {"spam"}, ex
        elif ex.kind in BENIGN_LOOKALIKE_KINDS:
            assert not ex.labels, ex
        else:
            assert ex.kind is None, ex


def _mentions(text: str) -> list[str]:
    return re.findall(r"@\w+", text.lower())


def test_mass_mentions_are_spam_and_a_few_mentions_are_not():
    # a flood pings everyone (@everyone, @here) or five people and more; a reason to
    # mention one to three people (plus one the noise may prefix) is ordinary chat
    examples = seed_examples()
    floods = [ex for ex in examples if ex.kind == "mass_mention"]
    assert len(floods) >= 30
    for ex in floods:
        names = _mentions(ex.text)
        assert {"@everyone", "@here"} & set(names) or len(names) >= 5, ex.text
    few = [ex for ex in examples if ex.kind == "benign_mention"]
    assert len(few) >= 40
    for ex in few:
        names = _mentions(ex.text)
        assert 1 <= len(names) <= 4 and not {"@everyone", "@here"} & set(names), ex.text


def test_spam_seed_keeps_a_benign_majority_and_look_alikes_outnumber_spam():
    examples = seed_examples()
    assert sum(1 for ex in examples if not ex.labels) > len(examples) / 2
    kinds = Counter(ex.kind for ex in examples if ex.kind)
    assert sum(kinds[k] for k in BENIGN_LOOKALIKE_KINDS) > sum(kinds[k] for k in SPAM_KINDS)


def test_heldout_loads_with_valid_labels_and_every_kind():
    rows = spam_heldout()
    assert 80 <= len(rows) <= 150
    raw = [json.loads(line) for line in SPAM_HELDOUT_FILE.read_text(encoding="utf-8").splitlines()
           if line.strip()]
    assert len(raw) == len(rows)
    for row in raw:
        assert set(row) == {"text", "labels", "sentiment", "kind"}
        assert set(row["labels"]) <= set(CATEGORIES)
        Sentiment(row["sentiment"])
    kinds = Counter(r.kind for r in rows)
    for kind in SPAM_KINDS:
        assert kinds[kind] >= 10, kind
    for kind in BENIGN_LOOKALIKE_KINDS:
        assert kinds[kind] >= 5, kind
    assert all(r.labels == {"spam"} for r in rows if r.kind in SPAM_KINDS)
    assert all(not r.labels for r in rows if r.kind in BENIGN_LOOKALIKE_KINDS)
    assert len({r.text.lower() for r in rows}) == len(rows)


def test_seed_labels_are_valid_categories():
    for ex in seed_examples():
        assert ex.labels <= set(CATEGORIES), ex


def test_heldout_never_appears_in_the_training_seed():
    examples = seed_examples()
    seen = {_norm(ex.text) for ex in examples}
    rows = spam_heldout()
    assert not [r.text for r in rows if _norm(r.text) in seen]
    # no near-duplicates either: the held-out lines are worded apart from every seed line
    near = [(r.text, ex.text) for r in rows for ex in examples if _jaccard(r.text, ex.text) >= 0.6]
    assert not near, near[:5]
    assert not {r.group for r in rows} & {ex.group for ex in examples}


def test_kind_must_fit_the_labels(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("[labels: - | sentiment: neutral | kind: phishing]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="kind"):
        seed._read_handwritten(bad, prefix="x")
    bad_row = tmp_path / "bad.jsonl"
    bad_row.write_text(json.dumps({"text": "hi", "labels": ["spam"], "sentiment": "neutral",
                                   "kind": "benign_link"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="kind"):
        spam_heldout(bad_row)
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"text": "hi", "labels": ["scam"], "sentiment": "neutral",
                                   "kind": "phishing"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown categories"):
        spam_heldout(unknown)
