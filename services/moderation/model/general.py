"""The general head: what a community starts from before it has taught Steward anything.

Trained on the project's seed set plus the training splits of the public sets in
``../shared/datasets`` when they are there (seed only otherwise), each source weighted
equally and class-balanced (:func:`~.heads.source_weights`). Sentiment is learned only
from the rows that carry a real sentiment label: the seed set and TweetEval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from schemas.moderation import CATEGORIES
from services.moderation.model import public_sets
from services.moderation.model.heads import LinearHead, fit_head, source_weights
from services.moderation.model.seed import SeedExample, seed_examples
from services.moderation.model.train import examples_hash

GENERAL_NAME = "steward-general"
PER_SET = 4000  # training rows per public set; more adds encoding time, not quality
HEAD_C = 0.3  # chosen on the leave-one-domain-out runs of bench/generalization.py
SENTIMENT_SOURCES = frozenset({"seed", "tweeteval"})
# TweetEval labels sentiment only: its tweets are not checked for harm (some are abusive),
# so they must not teach any category that they are harmless.
SENTIMENT_ONLY = frozenset({"tweeteval"})

Embed = Callable[[list[str]], np.ndarray]


def source_of(example: SeedExample) -> str:
    """The public set a row came from, or "seed" for every row of the project's seed set
    (whose groups name their part of it: hand-written, templated, spam)."""
    prefix = example.group.split(":")[0]
    return prefix if prefix in public_sets.SOURCES else "seed"


def general_examples(sets: Sequence[str] | None = None, per_set: int = PER_SET) -> list[SeedExample]:
    """The seed set plus at most ``per_set`` training rows of each public set."""
    rows = list(seed_examples())
    if public_sets.available():
        for name in sets if sets is not None else public_sets.READERS:
            rows += public_sets.cap(public_sets.load(name).train, per_set)
    return rows


def general_weights(examples: Sequence[SeedExample], category: str | None = None) -> np.ndarray:
    weights = source_weights(examples, source_of=source_of, category=category)
    if category is not None:
        weights[[source_of(ex) in SENTIMENT_ONLY for ex in examples]] = 0.0
    return weights


def fit_general(features: np.ndarray, examples: Sequence[SeedExample], c: float = HEAD_C,
                categories: Sequence[str] = CATEGORIES) -> LinearHead:
    sentiment_rows = np.array([source_of(ex) in SENTIMENT_SOURCES for ex in examples])
    return fit_head(features, examples, sentiment_rows=sentiment_rows, c=c,
                    weights_for=general_weights, categories=categories)


def write_general_head(cache: Path, head: LinearHead, examples: Sequence[SeedExample], *,
                       per_set: int, seconds: float = 0.0, metrics: dict | None = None):
    """Write ``head`` as the next version of ``steward-general``; returns (folder, card)."""
    from services.moderation.model.head_bundle import write_head_bundle

    sources = sorted({source_of(ex) for ex in examples})
    public = [s for s in sources if s != "seed"]
    return write_head_bundle(
        cache, GENERAL_NAME, head, train_size=len(examples), data_hash=examples_hash(examples),
        metrics=metrics or {}, training={"recipe": "source-balanced logistic regression per category",
                                         "c": HEAD_C, "per_set": per_set, "sources": sources,
                                         "seconds": round(seconds, 1)},
        data_files=[f"{public_sets.DATASETS} ({', '.join(public)})"] if public else None,
    )


def build_general_head(cache: Path, embed: Embed, *, per_set: int = PER_SET,
                       progress: Callable[[str], None] | None = None):
    """Fit and write the next version of ``steward-general``; returns (folder, card)."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    examples = general_examples(per_set=per_set)
    say(f"encoding {len(examples)} examples from {', '.join(sorted({source_of(ex) for ex in examples}))}")
    features = embed([ex.text for ex in examples])
    say("fitting the head")
    head = fit_general(features, examples)
    return write_general_head(cache, head, examples, per_set=per_set,
                              seconds=time.perf_counter() - started)
