"""Heads on embeddings, community adaptation, head bundles on disk, and which model scores
which community. Synthetic embeddings: no encoder, no broker."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from schemas.moderation import CATEGORIES, Sentiment
from services.moderation.model.adapt import (
    adapt_head,
    cross_validate,
    false_positives_at_recall,
    labelled_categories,
)
from services.moderation.model.head_bundle import (
    BundleNotFound,
    HeadClassifier,
    head_path,
    latest_ref,
    parse_ref,
    read_head,
    write_head_bundle,
)
from services.moderation.model.heads import (
    ABSENT_LOGIT,
    LinearHead,
    fit_head,
    source_weights,
)
from services.moderation.model.labels import HEAD_LABELS, N_CATEGORIES
from services.moderation.model.registry import ModelRegistry
from services.moderation.model.seed import SeedExample
from services.moderation.policy.load import PolicyError, parse_policy

DIM = 16
TOXICITY = CATEGORIES.index("toxicity")


def example(harmful: bool, source: str = "a", sentiment: Sentiment = Sentiment.neutral) -> SeedExample:
    return SeedExample(text=f"{source} {harmful}", labels=frozenset({"toxicity"}) if harmful else frozenset(),
                       sentiment=sentiment, group=f"{source}:1", handwritten=True)


def harm_along(direction: int, n: int, rng: np.random.Generator, source: str = "a"):
    """Unit-ish vectors whose harm shows along one axis (plus noise)."""
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, DIM))
    x[:, direction] += 2.5 * (2 * y - 1)
    return x.astype(np.float32), [example(bool(v), source) for v in y], y


def test_source_weights_give_every_source_the_same_total_and_balance_its_classes():
    rows = [example(True, "big")] * 90 + [example(False, "big")] * 10 + [example(True, "small")] * 5 \
        + [example(False, "small")] * 5
    w = source_weights(rows, category="toxicity")
    assert w.mean() == pytest.approx(1.0)
    big, small = w[:100].sum(), w[100:].sum()
    assert big == pytest.approx(small)
    assert w[:90].sum() == pytest.approx(w[90:100].sum())  # the big source's classes: half each


def test_every_part_of_the_seed_set_is_one_source_for_weighting():
    from services.moderation.model.general import SENTIMENT_SOURCES, source_of
    from services.moderation.model.seed import seed_examples

    seed = seed_examples()
    assert len({ex.group.split(":")[0] for ex in seed}) > 1  # hand-written, templated, spam ...
    assert {source_of(ex) for ex in seed} == {"seed"}
    assert "seed" in SENTIMENT_SOURCES  # its sentiment labels are real
    assert source_of(example(True, "davidson")) == "davidson"


def test_fit_head_learns_present_categories_and_leaves_absent_ones_at_no_evidence():
    rng = np.random.default_rng(0)
    x, rows, y = harm_along(0, 400, rng)
    head = fit_head(x, rows)
    logits = head.logits(x)
    assert roc_auc_score(y, logits[:, TOXICITY]) > 0.95
    spam = CATEGORIES.index("spam")
    assert np.allclose(logits[:, spam], ABSENT_LOGIT)  # no row was spam: weights stay zero
    # every row is "neutral": sentiment cannot be learned, so it reads flat, not "always neutral"
    assert np.allclose(logits[:, N_CATEGORIES:], 0.0)


def test_fit_head_learns_sentiment_only_from_the_rows_marked_as_labelled():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (300, DIM)).astype(np.float32)
    moods = [Sentiment.negative, Sentiment.neutral, Sentiment.positive]
    labelled = [example(False, "tweets", moods[i % 3]) for i in range(150)]
    for i in range(150):
        x[i, 3 + i % 3] += 4  # each mood along its own axis
    unlabelled = [example(False, "forum")] * 150  # defaults to neutral, but not a real label
    mask = np.array([True] * 150 + [False] * 150)
    head = fit_head(x, labelled + unlabelled, sentiment_rows=mask)
    predicted = head.logits(x[:150])[:, N_CATEGORIES:].argmax(1)
    assert (predicted == np.arange(150) % 3).mean() > 0.9


def test_linear_head_round_trips_and_refuses_another_label_layout(tmp_path):
    head = LinearHead(np.arange(DIM * len(HEAD_LABELS), dtype=np.float32).reshape(DIM, -1),
                      np.ones(len(HEAD_LABELS), dtype=np.float32))
    head.save(tmp_path / "head.npz")
    loaded = LinearHead.load(tmp_path / "head.npz")
    assert np.array_equal(loaded.weight, head.weight) and np.array_equal(loaded.bias, head.bias)
    np.savez(tmp_path / "other.npz", weight=head.weight, bias=head.bias, labels=np.array(["x"] * 10))
    with pytest.raises(ValueError, match="do not match"):
        LinearHead.load(tmp_path / "other.npz")


def base_head_along(direction: int) -> LinearHead:
    weight = np.zeros((DIM, len(HEAD_LABELS)), dtype=np.float32)
    weight[direction, TOXICITY] = 2.0
    bias = np.full(len(HEAD_LABELS), ABSENT_LOGIT, dtype=np.float32)
    bias[TOXICITY] = 0.0
    return LinearHead(weight, bias)


def test_adaptation_learns_a_community_whose_harm_the_base_does_not_see():
    rng = np.random.default_rng(2)
    base = base_head_along(0)  # the general model looks along axis 0
    x, rows, _ = harm_along(5, 200, rng)  # this community's harm lies along axis 5
    adapted = adapt_head(base, x, rows)
    x_new, _, y_new = harm_along(5, 1000, rng)
    before = roc_auc_score(y_new, base.logits(x_new)[:, TOXICITY])
    after = roc_auc_score(y_new, adapted.logits(x_new)[:, TOXICITY])
    assert before < 0.6
    assert after > 0.9
    # categories the examples did not label keep the base's weights exactly
    untouched = [i for i, c in enumerate(HEAD_LABELS) if c != "toxicity"]
    assert np.array_equal(adapted.weight[:, untouched], base.weight[:, untouched])
    assert np.array_equal(adapted.bias[untouched], base.bias[untouched])


def test_adaptation_keeps_a_base_that_already_agrees_with_the_community():
    rng = np.random.default_rng(3)
    base = base_head_along(0)
    x, rows, _ = harm_along(0, 60, rng)
    adapted = adapt_head(base, x, rows)
    x_new, _, y_new = harm_along(0, 1000, rng)
    assert roc_auc_score(y_new, adapted.logits(x_new)[:, TOXICITY]) > 0.95


def test_too_few_examples_of_a_class_teach_nothing():
    rows = [example(True)] * 4 + [example(False)] * 50
    assert labelled_categories(rows) == []
    base = base_head_along(0)
    adapted = adapt_head(base, np.zeros((54, DIM), dtype=np.float32), rows)
    assert np.array_equal(adapted.weight, base.weight)


def test_false_positives_are_compared_at_the_recall_the_base_had():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    base = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.65, 0.55, 0.1])  # 3 of 4 caught, 3 false alerts
    adapted = np.array([0.9, 0.8, 0.7, 0.1, 0.3, 0.2, 0.6, 0.1])  # the same 3 caught above 0.7
    out = false_positives_at_recall(labels, base, adapted, 0.5)
    assert out["recall"] == 0.75
    assert out["base_false_positives"] == 3
    assert out["adapted_threshold"] == 0.7
    assert out["adapted_false_positives"] == 0


def test_cross_validation_reports_the_gain_out_of_fold():
    rng = np.random.default_rng(4)
    x, rows, _ = harm_along(7, 300, rng)
    report = cross_validate(base_head_along(0), x, rows)
    assert list(report) == ["toxicity"]
    r = report["toxicity"]
    assert r["positives"] + r["negatives"] == 300
    assert r["base_roc_auc"] < 0.6
    assert r["adapted_roc_auc"] > 0.9


# ---------------------------------------------------------------- head bundles on disk

def write(cache, name="acme", head=None, **extra):
    return write_head_bundle(cache, name, head or base_head_along(0), train_size=10, data_hash="abc",
                             metrics={}, training={}, **extra)


def test_head_bundles_are_versioned_and_never_overwritten(tmp_path):
    _, card1 = write(tmp_path, base="steward-general@1", community="acme")
    _, card2 = write(tmp_path, head=base_head_along(3))
    assert (card1.version, card2.version) == ("1", "2")
    assert latest_ref(tmp_path, "acme") == "acme@2"
    head, card = read_head(head_path(tmp_path, "acme@1"))
    assert card.base == "steward-general@1" and card.community == "acme" and card.kind == "head"
    assert head.weight[0, TOXICITY] == 2.0  # version 1 is still the first head
    with pytest.raises(BundleNotFound, match="acme@1, acme@2"):
        head_path(tmp_path, "acme@3")


@pytest.mark.parametrize("ref", ["acme", "acme@0", "Acme@1", "acme@x", "../etc@1"])
def test_a_bundle_reference_names_one_version(ref):
    with pytest.raises(ValueError):
        parse_ref(ref)


def test_bad_bundle_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lowercase"):
        write(tmp_path, name="../evil")


def test_a_policy_pins_its_model_by_name_and_version():
    assert parse_policy("version: v1\nmodel: acme@3\ncategories: {}\n", "acme.yaml").model == "acme@3"
    with pytest.raises(PolicyError, match="model"):
        parse_policy("version: v1\nmodel: acme\ncategories: {}\n", "acme.yaml")


# ---------------------------------------------------------------- which model scores what

class FakeTokenizer:
    def __call__(self, texts, **_):
        return {"input_ids": [[0] * len(t.split()) for t in texts]}


class FakeEncoder:
    """Embeds "harmful" texts along axis 0."""

    tokenizer = FakeTokenizer()
    max_length = 128

    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        x = np.zeros((len(texts), DIM), dtype=np.float32)
        x[:, 0] = [3.0 if "harmful" in t else -3.0 for t in texts]
        return x


class FakeDefault:
    name, version = "steward-default", "1.x"

    def classify_timed(self, texts):
        from services.moderation.model.labels import decode

        return [decode([0.0] * len(HEAD_LABELS)) for _ in texts], 1.0


def test_each_community_is_scored_by_the_model_its_policy_pins(tmp_path):
    write(tmp_path)  # acme@1 reads axis 0
    fallbacks = []
    encoder = FakeEncoder()
    registry = ModelRegistry(FakeDefault(), tmp_path, load_encoder=lambda: encoder,
                             on_fallback=fallbacks.append)
    readings, models, _ = registry.classify_timed(
        ["a harmful thing", "a fine thing", "another harmful one", "x"],
        ["acme@1", "acme@1", None, "gone@2"])
    assert [m.name for m in models] == ["acme", "acme", "steward-default", "steward-default"]
    assert [m.version for m in models][:2] == ["1", "1"]
    assert readings[0].scores["toxicity"] > 0.99
    assert readings[1].scores["toxicity"] < 0.01
    assert readings[2].scores["toxicity"] == 0.5  # the default's reading, not acme's
    assert fallbacks == ["gone@2"]
    assert encoder.calls == 1  # one encoder pass for acme's two texts


def test_a_missing_bundle_is_retried_after_a_while(tmp_path):
    now = [0.0]
    registry = ModelRegistry(FakeDefault(), tmp_path, load_encoder=FakeEncoder, retry_s=30,
                             clock=lambda: now[0])
    assert registry.resolve("acme@1").name == "steward-default"
    write(tmp_path)
    now[0] = 10
    assert registry.resolve("acme@1").name == "steward-default"  # not retried yet
    now[0] = 31
    assert isinstance(registry.resolve("acme@1"), HeadClassifier)
