"""Benchmark: moderation on communities it has never seen, and adapting to one.

Run: ``.venv/bin/python -m bench.generalization`` (needs ../shared/datasets; about 20
minutes on 2 cores, most of it encoding every text once). In one run:

1. **Leave one domain out.** For each toxicity set (Davidson, OLID, Civil Comments, ETHOS,
   ToxiGen, Wikipedia), the general recipe (frozen MiniLM, source-balanced logistic
   regression, :mod:`services.moderation.model.general`) is fitted on the seed set and
   every other public set, and scored on the whole left-out set. Baselines of the same
   run: TF-IDF + logistic regression on the same rows with the same weights, the same
   head without source balancing, and the alt-profanity-check library (pretrained; its
   own training data includes Davidson and Wikipedia, so those two are not unseen for it).
2. **Adaptation.** From each left-out set, 50 / 100 / 200 / 500 examples (3 random draws)
   adapt the left-out head (:func:`~services.moderation.model.adapt.adapt_head`); ROC-AUC
   on the rest of the set, and the false positives at the base's recall.
3. **In domain.** The general head fitted on every set's training split, scored on the
   held-out splits, next to TF-IDF trained the same way; sentiment macro-F1 on TweetEval.
4. Writes ``steward-general`` (the in-domain head) as the next head bundle version,
   ``bench/results/generalization.json``, and the figures into that bundle's card.

The score of a toxicity set is the ``toxicity`` category: every harmful row of every set
carries it (a hate row is toxicity + identity_attack).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.moderation.model import public_sets
from services.moderation.model.adapt import adapt_head, false_positives_at_recall
from services.moderation.model.encoder import ENCODER_RECIPE, SentenceEncoder
from services.moderation.model.general import (
    HEAD_C,
    fit_general,
    general_examples,
    general_weights,
    write_general_head,
)
from services.moderation.model.heads import fit_head
from services.moderation.model.labels import N_CATEGORIES, SENTIMENTS
from services.moderation.model.seed import SeedExample, seed_examples

RESULTS = Path(__file__).with_name("results") / "generalization.json"
MODELS = Path(".steward/models")
CACHE = Path(".steward/cache/embeddings")
TOXICITY_SETS = ("davidson", "olid", "civil_comments", "ethos", "toxigen", "wikipedia")
PER_SET = int(os.environ.get("BENCH_PER_SET", "4000"))  # training rows per public set
SHOTS = (50, 100, 200, 500)
DRAWS = 3
EVAL_CAP = 3000  # rest-of-set rows scored after adaptation
TOXICITY = 0  # column of the toxicity logit


class Embeddings:
    """Every text encoded once, cached on disk per set (keyed by its texts and the encoder)."""

    def __init__(self, encoder: SentenceEncoder):
        self.encoder = encoder
        self.vectors: dict[str, np.ndarray] = {}

    def add_set(self, name: str, texts: list[str]) -> None:
        key = hashlib.sha256(json.dumps([ENCODER_RECIPE, texts]).encode()).hexdigest()[:12]
        path = CACHE / f"{name}-{key}.npy"
        if path.is_file():
            matrix = np.load(path)
        else:
            started = time.perf_counter()
            matrix = self.encoder.embed(texts)
            CACHE.mkdir(parents=True, exist_ok=True)
            np.save(path, matrix)
            print(f"encoded {name}: {len(texts)} texts in {time.perf_counter() - started:.0f}s", flush=True)
        self.vectors.update(zip(texts, matrix))

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, self.encoder.embed(missing)))
        return np.stack([self.vectors[t] for t in texts])


def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(labels, scores)), 4)


def pr_auc(labels, scores) -> float:
    from sklearn.metrics import average_precision_score

    return round(float(average_precision_score(labels, scores)), 4)


def toxic(rows: list[SeedExample]) -> np.ndarray:
    return np.array([int("toxicity" in r.labels) for r in rows])


def tfidf_scores(train: list[SeedExample], weights: np.ndarray, texts: list[str]) -> np.ndarray:
    """The classic baseline, on the same rows and weights as the head."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2), max_features=200_000)
    matrix = vectorizer.fit_transform([r.text for r in train])
    model = LogisticRegression(C=1.0, max_iter=2000).fit(matrix, toxic(train), sample_weight=weights)
    return model.decision_function(vectorizer.transform(texts))


def profanity_scores(texts: list[str]) -> np.ndarray:
    from profanity_check import predict_prob

    return predict_prob(texts)


def toxicity_weights(train: list[SeedExample]) -> np.ndarray:
    return general_weights(train, category="toxicity")


def unweighted(examples: list[SeedExample], category: str | None = None) -> np.ndarray:
    """The ablation: every row counts once (sentiment-only rows still teach no category)."""
    weights = general_weights(examples, category)
    return (weights > 0).astype(float)


def leave_one_out(sets: dict[str, public_sets.PublicSet], embed: Embeddings) -> tuple[dict, dict]:
    """Figures per left-out set, and the left-out heads (the bases for adaptation)."""
    figures, heads = {}, {}
    for held in TOXICITY_SETS:
        train = list(seed_examples())
        for name, s in sets.items():
            if name != held:
                train += public_sets.cap(s.train + s.heldout, PER_SET)
        test = sets[held].train + sets[held].heldout
        x_train, x_test = embed([r.text for r in train]), embed([r.text for r in test])
        y = toxic(test)
        started = time.perf_counter()
        # the toxicity column is fitted exactly as in the full head (one regression per category)
        no_sentiment = np.zeros(len(train), dtype=bool)
        head = fit_head(x_train, train, sentiment_rows=no_sentiment, c=HEAD_C,
                        weights_for=general_weights, categories=("toxicity",))
        fit_s = time.perf_counter() - started
        heads[held] = head
        unbalanced = fit_head(x_train, train, sentiment_rows=no_sentiment, c=HEAD_C,
                              weights_for=unweighted, categories=("toxicity",))
        steward = head.logits(x_test)[:, TOXICITY]
        runs = {
            "steward": steward,
            "steward_unbalanced": unbalanced.logits(x_test)[:, TOXICITY],
            "tfidf_lr": tfidf_scores(train, toxicity_weights(train), [r.text for r in test]),
            "alt_profanity_check": profanity_scores([r.text for r in test]),
        }
        figures[held] = {
            "rows": len(test), "positives": int(y.sum()), "train_rows": len(train),
            "head_fit_seconds": round(fit_s, 1),
            **{name: {"roc_auc": auc(y, s), "pr_auc": pr_auc(y, s)} for name, s in runs.items()},
        }
        print(held, json.dumps({k: v for k, v in figures[held].items() if isinstance(v, dict)}), flush=True)
    return figures, heads


def adaptation(sets: dict[str, public_sets.PublicSet], heads: dict, embed: Embeddings) -> dict:
    figures = {}
    for held in TOXICITY_SETS:
        rows = sets[held].train + sets[held].heldout
        x, y = embed([r.text for r in rows]), toxic(rows)
        per_shot = {}
        for shots in SHOTS:
            draws = []
            for draw in range(DRAWS):
                order = np.random.default_rng(draw).permutation(len(rows))
                chosen, rest = order[:shots], order[shots:][:EVAL_CAP]
                started = time.perf_counter()
                adapted = adapt_head(heads[held], x[chosen], [rows[i] for i in chosen])
                seconds = time.perf_counter() - started
                base_s = heads[held].logits(x[rest])[:, TOXICITY]
                adapted_s = adapted.logits(x[rest])[:, TOXICITY]
                fps = false_positives_at_recall(y[rest], 1 / (1 + np.exp(-base_s)),
                                                1 / (1 + np.exp(-adapted_s)), 0.5)
                draws.append((auc(y[rest], base_s), auc(y[rest], adapted_s), fps, seconds))
            base_fp = sum(d[2]["base_false_positives"] for d in draws)
            adapted_fp = sum(d[2]["adapted_false_positives"] for d in draws)
            per_shot[shots] = {
                "base_roc_auc": round(float(np.mean([d[0] for d in draws])), 4),
                "adapted_roc_auc": round(float(np.mean([d[1] for d in draws])), 4),
                "false_positives_at_base_recall": {"base": base_fp, "adapted": adapted_fp,
                                                   "change": round(adapted_fp / base_fp - 1, 3) if base_fp else None},
                "adapt_seconds": round(float(np.mean([d[3] for d in draws])), 2),
            }
        figures[held] = per_shot
        print(held, "adapted", json.dumps({k: v["adapted_roc_auc"] for k, v in per_shot.items()}), flush=True)
    return figures


def in_domain(sets: dict[str, public_sets.PublicSet], embed: Embeddings):
    """The general head on every training split, scored on the held-out splits."""
    train = general_examples(per_set=PER_SET)
    head = fit_general(embed([r.text for r in train]), train)
    figures = {}
    for name in TOXICITY_SETS:
        test = sets[name].heldout
        y = toxic(test)
        steward = head.logits(embed([r.text for r in test]))[:, TOXICITY]
        tfidf = tfidf_scores(train, toxicity_weights(train), [r.text for r in test])
        figures[name] = {"steward": {"roc_auc": auc(y, steward), "pr_auc": pr_auc(y, steward)},
                         "tfidf_lr": {"roc_auc": auc(y, tfidf), "pr_auc": pr_auc(y, tfidf)}}
    figures["sentiment"] = sentiment(sets["tweeteval_sentiment"], head, embed)
    return figures, head, train


def sentiment(tweets: public_sets.PublicSet, head, embed: Embeddings) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    names = [s.value for s in SENTIMENTS]
    gold = [names.index(r.sentiment.value) for r in tweets.heldout]
    x_test = embed([r.text for r in tweets.heldout])
    steward = head.logits(x_test)[:, N_CATEGORIES:].argmax(1)
    # the reference point: a plain logistic regression on TweetEval alone
    x_train = embed([r.text for r in tweets.train])
    plain = LogisticRegression(max_iter=3000).fit(
        x_train, [names.index(r.sentiment.value) for r in tweets.train]).predict(x_test)
    return {"heldout_rows": len(gold),
            "steward_macro_f1": round(float(f1_score(gold, steward, average="macro")), 4),
            "tweeteval_only_lr_macro_f1": round(float(f1_score(gold, plain, average="macro")), 4)}


def mean(values) -> float:
    return round(float(np.mean(list(values))), 4)


def main() -> None:
    if not public_sets.available():
        raise SystemExit(f"{public_sets.DATASETS} is absent: nothing to measure on")
    started = time.perf_counter()
    sets = {name: public_sets.load(name) for name in public_sets.READERS}
    embed = Embeddings(SentenceEncoder.load(MODELS, threads=2))
    for name, s in sets.items():
        embed.add_set(name, [r.text for r in s.train + s.heldout])
    embed([ex.text for ex in seed_examples()])

    loo, heads = leave_one_out(sets, embed)
    adapted = adaptation(sets, heads, embed)
    domain, general, train = in_domain(sets, embed)
    models = ("steward", "steward_unbalanced", "tfidf_lr", "alt_profanity_check")
    summary = {
        "leave_one_out_mean_roc_auc": {m: mean(f[m]["roc_auc"] for f in loo.values()) for m in models},
        "leave_one_out_mean_pr_auc": {m: mean(f[m]["pr_auc"] for f in loo.values()) for m in models},
        "steward_beats_both_baselines_on": [
            name for name, f in loo.items()
            if f["steward"]["roc_auc"] > max(f["tfidf_lr"]["roc_auc"], f["alt_profanity_check"]["roc_auc"])],
        "adapted_mean_roc_auc": {shots: mean(a[shots]["adapted_roc_auc"] for a in adapted.values())
                                 for shots in SHOTS},
        "adapted_false_positive_change_at_200": mean(
            a[200]["false_positives_at_base_recall"]["change"] for a in adapted.values()
            if a[200]["false_positives_at_base_recall"]["change"] is not None),
        "in_domain_mean_roc_auc": {m: mean(domain[n][m]["roc_auc"] for n in TOXICITY_SETS)
                                   for m in ("steward", "tfidf_lr")},
        "sentiment": domain["sentiment"],
    }
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, CPU only",
        "encoder": ENCODER_RECIPE,
        "train_rows_per_public_set": PER_SET,
        "summary": summary,
        "leave_one_out": loo,
        "adaptation": adapted,
        "in_domain": domain,
        "seconds": round(time.perf_counter() - started),
    }
    _, card = write_general_head(MODELS, general, train, per_set=PER_SET, metrics={
        "generalization": {"summary": summary, "results": str(RESULTS)}})
    results["bundle"] = f"{card.name}@{card.version}"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
