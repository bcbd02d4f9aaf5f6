"""The external-label crosswalk: pure data, no model."""

import math

import pytest

from schemas.moderation import CATEGORIES
from services.moderation.model.crosswalk import (
    ALIASES,
    SCHEMES,
    UNMAPPED,
    known_schemes,
    map_scores,
    resolve_scheme,
    unknown_labels,
    unmapped_labels,
)


def test_every_target_is_a_steward_category():
    for scheme, mapping in SCHEMES.items():
        for label, targets in mapping.items():
            assert targets, (scheme, label)
            assert set(targets) <= set(CATEGORIES), (scheme, label, targets)
            assert label == label.strip().lower()


def test_mapped_and_unmapped_do_not_overlap_and_aliases_resolve():
    assert set(UNMAPPED) == set(SCHEMES)
    for scheme in SCHEMES:
        assert not SCHEMES[scheme].keys() & UNMAPPED[scheme].keys(), scheme
    for alias, target in ALIASES.items():
        assert target in SCHEMES
        assert resolve_scheme(alias.upper()) == target


def test_toxic_bert_labels():
    out = map_scores("toxic-bert", {"toxic": 0.9, "severe_toxic": 0.2, "obscene": 0.95,
                                    "threat": 0.01, "insult": 0.7, "identity_hate": 0.3})
    # obscene (profanity) and toxic both feed toxicity: the max wins
    assert out == {"toxicity": 0.95, "severe_toxicity": 0.2, "insult": 0.7, "threat": 0.01,
                   "identity_attack": 0.3}
    assert list(out) == [c for c in CATEGORIES if c in out]  # CATEGORIES order


def test_detoxify_unbiased_labels_and_identity_mentions():
    scores = {"toxicity": 0.4, "severe_toxicity": 0.05, "obscene": 0.1, "identity_attack": 0.6,
              "insult": 0.3, "threat": 0.02, "sexual_explicit": 0.8, "muslim": 0.9}
    out = map_scores("detoxify-unbiased", scores)
    assert out == {"toxicity": 0.4, "severe_toxicity": 0.05, "insult": 0.3, "threat": 0.02,
                   "identity_attack": 0.6, "sexual": 0.8}
    assert unknown_labels("detoxify", scores) == []
    assert "muslim" in unmapped_labels("detoxify", scores)


def test_openai_categories_take_the_max():
    scores = {"harassment": 0.3, "harassment/threatening": 0.6, "hate": 0.2,
              "hate/threatening": 0.1, "sexual": 0.05, "sexual/minors": 0.4,
              "self-harm": 0.99, "self-harm/intent": 0.9, "self-harm/instructions": 0.1,
              "violence": 0.97, "violence/graphic": 0.5, "illicit": 0.2, "illicit/violent": 0.1}
    out = map_scores("openai", scores)
    assert out == {"toxicity": 0.6, "insult": 0.6, "threat": 0.6, "identity_attack": 0.2,
                   "sexual": 0.4}
    # self-harm and violence are known but deliberately not folded into any category
    assert unknown_labels("openai", scores) == []
    assert set(unmapped_labels("openai", scores)) == {
        "self-harm", "self-harm/intent", "self-harm/instructions", "violence",
        "violence/graphic", "illicit", "illicit/violent"}


def test_llama_guard_codes():
    out = map_scores("llama-guard", {"S1": 0.7, "S9": 0.9, "S10": 0.8, "S12": 0.6, "S11": 1.0,
                                     "S14": 1.0})
    assert out == {"threat": 0.9, "identity_attack": 0.8, "sexual": 0.6}
    assert map_scores("llama-guard-3", {"s10": 1.0}) == {"identity_attack": 1.0}
    every_code = {f"S{i}" for i in range(1, 15)}
    assert unknown_labels("llama-guard-4", dict.fromkeys(every_code, 0.0)) == []
    assert unknown_labels("llama-guard", {"S15": 1.0}) == ["S15"]


def test_llama_guard_2_numbering_differs():
    # S9 is hate in Llama Guard 2 but indiscriminate weapons in Llama Guard 3/4
    assert map_scores("llama-guard-2", {"S9": 0.8}) == {"identity_attack": 0.8}
    assert map_scores("llama-guard", {"S9": 0.8}) == {"threat": 0.8}
    assert unknown_labels("llama-guard-2", {"S12": 1.0}) == ["S12"]


def test_unknown_labels_ignored_and_reported():
    scores = {" Toxic ": 0.8, "toxicc": 0.9, "spam": 0.99}
    assert map_scores("toxic-bert", scores) == {"toxicity": 0.8}
    assert unknown_labels("toxic-bert", scores) == ["spam", "toxicc"]


def test_categories_without_evidence_are_absent_not_zero():
    assert map_scores("openai", {}) == {}
    assert "spam" not in map_scores("detoxify", dict.fromkeys(SCHEMES["detoxify"], 0.1))


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(ValueError) as err:
        map_scores("perspective", {"TOXICITY": 0.5})
    for name in known_schemes():
        assert name in str(err.value)
    with pytest.raises(ValueError):
        unknown_labels("nope", {})


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf])
def test_rejects_non_probabilities(bad):
    with pytest.raises(ValueError, match="probability"):
        map_scores("toxic-bert", {"toxic": bad})
