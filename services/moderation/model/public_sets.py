"""The labeled public sets of ../shared/datasets as Steward training and evaluation rows.

Read by path at run time; nothing is copied into the repository. Each reader maps the
set's own labels onto Steward's categories (see the SOURCE.md of each set for the
labels), and every set is split once, with a fixed seed, into train and held-out rows.

``focus`` is the category a set measures: its held-out ROC-AUC is computed on it.
"""

from __future__ import annotations

import csv
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from schemas.moderation import Sentiment
from services.moderation.model.seed import SeedExample

# The checkout's sibling ../shared/datasets, or wherever STEWARD_DATASETS points.
DATASETS = Path(os.environ.get("STEWARD_DATASETS")
                or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")
SEED = 0
HOLDOUT = 0.2

HATE = frozenset({"toxicity", "identity_attack"})
TOXIC = frozenset({"toxicity"})
NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PublicSet:
    name: str
    domain: str
    focus: str  # the category whose held-out ROC-AUC this set reports; "sentiment" for F1
    train: list[SeedExample]
    heldout: list[SeedExample]


# The group prefix of each set's rows ("davidson:17"): how a mixed training set tells
# which public set a row came from.
SOURCES = frozenset({"davidson", "olid", "civil", "ethos", "toxigen", "wikipedia", "sms", "tweeteval"})


def _row(name: str, index: int, text: str, labels: frozenset[str],
         sentiment: Sentiment = Sentiment.neutral) -> SeedExample:
    return SeedExample(text=text.strip(), labels=labels, sentiment=sentiment,
                       group=f"{name}:{index}", handwritten=True)


def _csv(path: Path, **options) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, **options))


def davidson() -> list[SeedExample]:
    """Tweets: class 0 hate speech, 1 offensive language, 2 neither (majority of raters)."""
    labels = {"0": HATE, "1": TOXIC, "2": NONE}
    rows = _csv(DATASETS / "davidson-hate-offensive" / "data" / "labeled_data.csv")
    return [_row("davidson", i, r["tweet"], labels[r["class"]]) for i, r in enumerate(rows)]


def olid() -> list[SeedExample]:
    """Tweets (training file): level A OFF / NOT; OFF aimed at a person (TIN, IND) also insults."""
    rows = _csv(DATASETS / "olid-offenseval2019" / "OLIDv1.0" / "olid-training-v1.0.tsv", delimiter="\t")

    def labels(r: dict[str, str]) -> frozenset[str]:
        if r["subtask_a"] != "OFF":
            return NONE
        return TOXIC | ({"insult"} if r["subtask_c"] == "IND" else set())

    return [_row("olid", i, r["tweet"], labels(r)) for i, r in enumerate(rows)]


def civil_comments() -> list[SeedExample]:
    """News comments: toxic unless most raters ticked "not toxic"; span types add categories."""
    folder = DATASETS / "civil-comments-toxic-spans" / "data"
    votes: dict[str, list[bool]] = defaultdict(list)
    worker_of: dict[str, str] = {}
    for r in _csv(folder / "annotations.csv"):
        votes[r["comment_id"]].append(r["not toxic"] == "True")
        worker_of[r["annotation"]] = r["comment_id"]
    types = {"Insult": "insult", "Threat": "threat", "Identity based Attack": "identity_attack"}
    extra: dict[str, Counter] = defaultdict(Counter)
    for r in _csv(folder / "spans.csv"):
        if r["type"] in types and r["annotation"] in worker_of:
            extra[worker_of[r["annotation"]]][types[r["type"]]] += 1
    rows = []
    for i, r in enumerate(_csv(folder / "comments.csv")):
        flags = votes.get(r["comment_id"])
        if not flags:
            continue
        toxic = sum(flags) * 2 <= len(flags)  # "ok" only when most raters said not toxic
        # a category from the spans counts when at least two raters marked it
        cats = {c for c, n in extra[r["comment_id"]].items() if n >= 2}
        rows.append(_row("civil", i, r["comment_text"], TOXIC | cats if toxic else NONE))
    return rows


def ethos() -> list[SeedExample]:
    """YouTube and Reddit comments: isHate is the share of raters calling it hate."""
    rows = _csv(DATASETS / "ethos-hate-speech" / "ethos" / "ethos_data" / "Ethos_Dataset_Binary.csv",
                delimiter=";")
    return [_row("ethos", i, r["comment"], HATE if float(r["isHate"]) >= 0.5 else NONE)
            for i, r in enumerate(rows)]


def toxigen() -> list[SeedExample]:
    """ToxiGen seed statements about 16 groups: hate or neutral."""
    rows = _csv(DATASETS / "toxigen-prompts" / "toxigen_prompt_sentences.csv")
    return [_row("toxigen", i, r["text"], HATE if r["label"] == "hate" else NONE)
            for i, r in enumerate(rows)]


def wikipedia() -> list[SeedExample]:
    """Wikipedia talk-page comments (the non-fuzzed identity test set): toxic True / False."""
    rows = _csv(DATASETS / "wikipedia-toxicity-identity-testset" / "toxicity_nonfuzzed_testset.csv")
    return [_row("wikipedia", i, r["comment"], TOXIC if r["toxic"] == "True" else NONE)
            for i, r in enumerate(rows)]


def sms() -> list[SeedExample]:
    path = DATASETS / "sms-spam-collection" / "SMSSpamCollection"
    lines = [line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
    return [_row("sms", i, text, frozenset({"spam"}) if label == "spam" else NONE)
            for i, (label, text) in enumerate(lines)]


def tweeteval_sentiment() -> list[SeedExample]:
    """Everyday tweets with a sentiment label (no harm labels: they count as benign)."""
    folder = DATASETS / "tweeteval-sentiment"
    names = [Sentiment.negative, Sentiment.neutral, Sentiment.positive]
    rows = []
    for part in ("val", "test"):
        texts = (folder / f"{part}_text.txt").read_text(encoding="utf-8").splitlines()
        labels = (folder / f"{part}_labels.txt").read_text(encoding="utf-8").splitlines()
        rows += [(t, names[int(lab)]) for t, lab in zip(texts, labels, strict=True)]
    return [_row("tweeteval", i, t, NONE, s) for i, (t, s) in enumerate(rows)]


READERS: dict[str, tuple[str, str, Callable[[], list[SeedExample]]]] = {
    "davidson": ("Twitter", "toxicity", davidson),
    "olid": ("Twitter", "toxicity", olid),
    "civil_comments": ("news comments", "toxicity", civil_comments),
    "ethos": ("YouTube and Reddit comments", "identity_attack", ethos),
    "toxigen": ("statements about groups", "identity_attack", toxigen),
    "wikipedia": ("Wikipedia talk pages", "toxicity", wikipedia),
    "sms": ("SMS", "spam", sms),
    "tweeteval_sentiment": ("Twitter", "sentiment", tweeteval_sentiment),
}


def available() -> bool:
    return DATASETS.is_dir()


def load(name: str, *, holdout: float = HOLDOUT, seed: int = SEED) -> PublicSet:
    """One set, de-duplicated by text, split at random with a fixed seed."""
    domain, focus, read = READERS[name]
    unique: dict[str, SeedExample] = {}
    for example in read():
        if example.text:
            unique.setdefault(example.text, example)
    rows = sorted(unique.values(), key=lambda e: e.group)
    random.Random(f"{seed}:{name}").shuffle(rows)
    cut = round(len(rows) * holdout)
    return PublicSet(name, domain, focus, train=rows[cut:], heldout=rows[:cut])


def cap(rows: list[SeedExample], n: int, seed: int = SEED) -> list[SeedExample]:
    """At most ``n`` rows, keeping every class's share (a stratified sample by label set)."""
    if len(rows) <= n:
        return rows
    by_labels: dict[frozenset[str], list[SeedExample]] = defaultdict(list)
    for row in rows:
        by_labels[row.labels].append(row)
    rng = random.Random(seed)
    picked: list[SeedExample] = []
    for labels in sorted(by_labels, key=sorted):
        group = by_labels[labels]
        picked += rng.sample(group, max(1, round(n * len(group) / len(rows))))
    return picked
