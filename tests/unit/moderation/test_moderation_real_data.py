"""Flag rates on real, public text (optional: skipped when the shared data sets are absent).

The data sets are read by path at test time only; nothing from them is in the repo. Each
set is sampled with a fixed seed so the numbers are stable for a given bundle. "Flagged"
means what a community would see: the built-in policy raises an incident.

Bars are the measured numbers of the current default bundle plus a margin (see the
comments); they guard against regressions, they are not targets.
"""

import pytest

from bench import datasets
from services.moderation.policy.evaluate import evaluate
from services.moderation.policy.load import built_in_policy

pytestmark = pytest.mark.skipif(
    not datasets.DATASETS.is_dir(), reason=f"no shared data sets at {datasets.DATASETS}"
)


def _need(texts: list[str] | None) -> list[str]:
    if texts is None:
        pytest.skip("that data set is missing from ../shared/datasets")
    return texts


def _flag_rate(classifier, texts: list[str], category: str | None = None) -> float:
    policy = built_in_policy()
    flagged = 0
    for scores in classifier.classify(texts):
        decision = evaluate(policy, scores.scores)
        if decision and (category is None or category in decision.categories):
            flagged += 1
    return flagged / len(texts)


# Measured on bundle 1.808680b9f7 (400-text samples, spam threshold 0.9): sms ham 0.13,
# OLID NOT 0.16, sms spam caught as spam 0.70. Bundle 1.918b339983 (spam at 0.7) had
# 0.13 / 0.14 / 0.60; the original bundle (1.9f83ab9a87) 0.21 / 0.08 / 0.52.
def test_benign_sms_ham_is_rarely_flagged(classifier):
    rate = _flag_rate(classifier, _need(datasets.sms("ham")))
    assert rate <= 0.18, rate


def test_benign_olid_tweets_are_rarely_flagged(classifier):
    rate = _flag_rate(classifier, _need(datasets.olid("NOT")))
    assert rate <= 0.20, rate


def test_sms_spam_is_caught_as_spam(classifier):
    rate = _flag_rate(classifier, _need(datasets.sms("spam")), category="spam")
    assert rate >= 0.45, rate


def test_offensive_tweets_are_flagged_more_than_benign_ones(classifier):
    # OLID OFF is broad (profanity, politics); only the ordering is a stable property
    assert _flag_rate(classifier, _need(datasets.olid("OFF"))) > 2 * _flag_rate(classifier, _need(datasets.olid("NOT")))
