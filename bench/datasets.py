"""Readers for the public labeled sets in ../shared/datasets, by path, at run time only.

Nothing from these sets is copied into the repository. Each reader samples with a fixed
seed so that figures are stable for a given bundle, and returns None when the set is
absent (tests skip, benchmarks say so).
"""

import csv
import random

from services.moderation.model import public_sets
from services.moderation.model.public_sets import DATASETS

SAMPLE = 400
SEED = 0


def sample(texts: list[str], n: int = SAMPLE) -> list[str]:
    texts = sorted({t.strip() for t in texts if t.strip()})
    return texts if len(texts) <= n else random.Random(SEED).sample(texts, n)


def sms(label: str) -> list[str] | None:
    """SMS Spam Collection: ``ham`` or ``spam``."""
    if not (DATASETS / "sms-spam-collection").is_dir():
        return None
    return sample([row.text for row in public_sets.sms() if ("spam" in row.labels) == (label == "spam")])


def olid(label: str) -> list[str] | None:
    """OLID / OffensEval 2019 test set, level A: ``NOT`` or ``OFF``."""
    folder = DATASETS / "olid-offenseval2019" / "OLIDv1.0"
    tweets, labels = folder / "testset-levela.tsv", folder / "labels-levela.csv"
    if not (tweets.is_file() and labels.is_file()):
        return None
    with tweets.open(encoding="utf-8", newline="") as fh:
        text = {row["id"]: row["tweet"] for row in csv.DictReader(fh, delimiter="\t")}
    with labels.open(encoding="utf-8", newline="") as fh:
        gold = {row[0]: row[1] for row in csv.reader(fh)}
    return sample([t for i, t in text.items() if gold.get(i) == label])


def tweeteval_sentiment() -> list[str] | None:
    """TweetEval sentiment test texts (everyday tweets; none labelled harmful)."""
    path = DATASETS / "tweeteval-sentiment" / "test_text.txt"
    return sample(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else None
