"""Flag rates on real, public text (optional: skipped when the shared data sets are absent).

The data sets are read by path at test time only; nothing from them is in the repo. Each
set is sampled with a fixed seed so the numbers are stable for a given bundle. "Flagged"
means what a community would see: the built-in policy raises an incident.

Bars are the measured numbers of the current default bundle plus a margin (see the
comments); they guard against regressions, they are not targets.
"""

import csv
import random
from pathlib import Path

import pytest

from services.moderation.policy.evaluate import evaluate
from services.moderation.policy.load import built_in_policy

DATASETS = Path(__file__).resolve().parents[3].parent / "shared" / "datasets"
SAMPLE = 400
SEED = 0

pytestmark = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"no shared data sets at {DATASETS}")


def _sample(texts: list[str], n: int = SAMPLE) -> list[str]:
    texts = sorted(set(t.strip() for t in texts if t.strip()))
    return texts if len(texts) <= n else random.Random(SEED).sample(texts, n)


def _sms(label: str) -> list[str]:
    path = DATASETS / "sms-spam-collection" / "SMSSpamCollection"
    if not path.is_file():
        pytest.skip(f"missing {path}")
    rows = [line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
    return _sample([text for lab, text in rows if lab == label])


def _olid(label: str) -> list[str]:
    folder = DATASETS / "olid-offenseval2019" / "OLIDv1.0"
    tweets, labels = folder / "testset-levela.tsv", folder / "labels-levela.csv"
    if not (tweets.is_file() and labels.is_file()):
        pytest.skip(f"missing OLID test files in {folder}")
    with tweets.open(encoding="utf-8", newline="") as fh:
        text = {row["id"]: row["tweet"] for row in csv.DictReader(fh, delimiter="\t")}
    with labels.open(encoding="utf-8", newline="") as fh:
        gold = {row[0]: row[1] for row in csv.reader(fh)}
    return _sample([t for i, t in text.items() if gold.get(i) == label])


def _flag_rate(classifier, texts: list[str], category: str | None = None) -> float:
    policy = built_in_policy()
    flagged = 0
    for scores in classifier.classify(texts):
        decision = evaluate(policy, scores.scores)
        if decision and (category is None or category in decision.categories):
            flagged += 1
    return flagged / len(texts)


# Measured on bundle 1.918b339983 (400-text samples): sms ham 0.13, OLID NOT 0.14,
# sms spam caught as spam 0.60. The original bundle (1.9f83ab9a87) had 0.21 / 0.08 / 0.52.
def test_benign_sms_ham_is_rarely_flagged(classifier):
    rate = _flag_rate(classifier, _sms("ham"))
    assert rate <= 0.18, rate


def test_benign_olid_tweets_are_rarely_flagged(classifier):
    rate = _flag_rate(classifier, _olid("NOT"))
    assert rate <= 0.20, rate


def test_sms_spam_is_caught_as_spam(classifier):
    rate = _flag_rate(classifier, _sms("spam"), category="spam")
    assert rate >= 0.45, rate


def test_offensive_tweets_are_flagged_more_than_benign_ones(classifier):
    # OLID OFF is broad (profanity, politics); only the ordering is a stable property
    assert _flag_rate(classifier, _olid("OFF")) > 2 * _flag_rate(classifier, _olid("NOT"))
