"""The public-set readers of the quality benchmark (skipped without ../shared/datasets)."""

import pytest

from services.moderation.model import public_sets
from schemas.moderation import CATEGORIES

pytestmark = pytest.mark.skipif(
    not public_sets.available(), reason=f"no shared data sets at {public_sets.DATASETS}"
)


@pytest.mark.parametrize("name", list(public_sets.READERS))
def test_each_set_splits_into_disjoint_labeled_rows(name):
    labeled = public_sets.load(name)
    train_texts = {row.text for row in labeled.train}
    held_texts = {row.text for row in labeled.heldout}
    assert train_texts and held_texts and not train_texts & held_texts
    assert 0.15 < len(held_texts) / (len(train_texts) + len(held_texts)) < 0.25
    rows = labeled.train + labeled.heldout
    assert all(row.labels <= set(CATEGORIES) for row in rows)
    if labeled.focus == "sentiment":
        assert {row.sentiment.value for row in rows} == {"negative", "neutral", "positive"}
    else:  # both classes of the focus category are present on each side of the split
        for side in (labeled.train, labeled.heldout):
            positives = sum(labeled.focus in row.labels for row in side)
            assert 0 < positives < len(side)
    assert public_sets.load(name).heldout == labeled.heldout  # the split is stable
    from services.moderation.model.general import source_of

    assert {source_of(row) for row in rows} == {row.group.split(":")[0] for row in rows} <= public_sets.SOURCES


def test_label_mapping_follows_each_sets_documentation():
    davidson = {row.text: row.labels for row in public_sets.davidson()}
    # class 0 (hate speech), 1 (offensive), 2 (neither), as counted in its SOURCE.md
    hate = sum(labels == public_sets.HATE for labels in davidson.values())
    neither = sum(not labels for labels in davidson.values())
    assert 1_300 < hate < 1_500 and 4_000 < neither < 4_200
    spam = [row for row in public_sets.sms() if "spam" in row.labels]
    assert len(spam) == 747


def test_cap_keeps_each_label_sets_share():
    rows = public_sets.load("sms").train
    capped = public_sets.cap(rows, 400)
    share = sum("spam" in r.labels for r in rows) / len(rows)
    assert abs(len(capped) - 400) <= 2
    assert sum("spam" in r.labels for r in capped) / len(capped) == pytest.approx(share, abs=0.01)
    assert public_sets.cap(rows[:10], 400) == rows[:10]
