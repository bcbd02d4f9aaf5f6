import pytest

from schemas import CATEGORIES, Severity
from services.moderation.policy.evaluate import evaluate
from services.moderation.policy.load import PolicyBook, PolicyError, built_in_policy, parse_policy

QUIET = {c: 0.01 for c in CATEGORIES}


def test_nothing_over_threshold_means_no_incident():
    assert evaluate(built_in_policy(), QUIET) is None


def test_most_severe_category_names_the_rule():
    decision = evaluate(built_in_policy(), {**QUIET, "insult": 0.9, "threat": 0.6, "toxicity": 0.95})
    assert decision.severity is Severity.high
    assert decision.rule == "threshold:threat"
    assert decision.category == "threat"  # the rule's category, though toxicity scored higher
    assert set(decision.categories) == {"insult", "threat", "toxicity"}


def test_channel_override_changes_the_threshold():
    policy = parse_policy(
        """
version: v7
categories:
  spam: {threshold: 0.5, severity: low}
channels:
  promotions:
    spam: {threshold: 0.99, severity: low}
""",
        "test",
    )
    scores = {**QUIET, "spam": 0.8}
    assert evaluate(policy, scores, "general").rule == "threshold:spam"
    assert evaluate(policy, scores, "promotions") is None


def test_invalid_policy_is_refused_with_a_reason():
    with pytest.raises(PolicyError, match="unknown categories"):
        parse_policy("version: x\ncategories:\n  rudeness: {threshold: 0.5, severity: low}\n", "bad.yaml")
    with pytest.raises(PolicyError, match="threshold"):
        parse_policy("version: x\ncategories:\n  spam: {threshold: 2, severity: low}\n", "bad.yaml")


def test_policy_book_prefers_the_community_file(tmp_path):
    (tmp_path / "acme.yaml").write_text("version: acme-3\ncategories:\n  spam: {threshold: 0.1, severity: medium}\n")
    book = PolicyBook(tmp_path)
    assert book.for_community("acme").version == "acme-3"
    assert book.for_community("other").version == built_in_policy().version
