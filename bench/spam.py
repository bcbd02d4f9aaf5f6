"""Benchmark: spam that communities see, on the project's own held-out spam set.

Run: ``.venv/bin/python -m bench.spam`` (about 9 minutes on 2 cores; one torch thread, so
it can share the machine). In one run it trains small bundles with ``build_bundle`` (the
default recipe, ``holdout=0``: every given row trains) and scores each of them on
``services/moderation/model/spam_heldout.jsonl``, hand-written spam and look-alike benign
messages that no bundle trains on (see :func:`~services.moderation.model.seed.spam_heldout`):

- ``sms_only`` (the baseline): spam known only from SMS: every seed row without a spam
  label (the benign look-alikes of ``seed_spam.txt`` included) plus SMS training rows;
- ``previous_seed``: the seed set without ``seed_spam.txt`` and its generated lines, i.e.
  what the default bundle learned spam from before the spam seed data;
- ``seed_only``: the full seed set;
- ``seed_plus_sms``: the full seed set plus the same SMS rows as the baseline.

SMS rows are the training split of :mod:`services.moderation.model.public_sets` (every spam
row, and as many ham rows as spam rows). Figures per bundle: spam ROC-AUC and PR-AUC,
recall at the card's spam threshold, the benign false-flag rate (spam score at or above
it; and any category), recall per spam kind and false flags per look-alike kind, ratios
to ``sms_only``, and, as context, the same spam figures on a stratified sample of SMS
held-out rows. Without the shared data sets the two SMS bundles and the SMS figures are
skipped, and said so.

Writes ``bench/results/spam.json``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch

from services.moderation.model import Classifier, public_sets
from services.moderation.model.evaluation import category_metrics
from services.moderation.model.seed import (
    BENIGN_LOOKALIKE_KINDS,
    SPAM_HELDOUT_FILE,
    SPAM_KINDS,
    SeedExample,
    seed_examples,
    spam_heldout,
)
from services.moderation.model.train import TrainConfig, build_bundle

RESULTS = Path(__file__).with_name("results") / "spam.json"
EPOCHS = int(os.environ.get("BENCH_SPAM_EPOCHS", "5"))
SMS_HELDOUT = int(os.environ.get("BENCH_SPAM_SMS_HELDOUT", "600"))
THREADS = 1  # the machine has 2 cores and another job shares it
BASELINE = "sms_only"


def _from_spam_seed(ex: SeedExample) -> bool:
    """Rows that ``seed_spam.txt`` added: its lines, their noised copies, the mention lines."""
    return ex.kind is not None


def sms_train_rows(sms: public_sets.PublicSet) -> list[SeedExample]:
    """Every SMS training spam row and as many ham rows, sampled with a fixed seed."""
    spam = [r for r in sms.train if "spam" in r.labels]
    ham = [r for r in sms.train if not r.labels]
    return spam + random.Random(public_sets.SEED).sample(ham, min(len(ham), len(spam)))


def variants(sms_rows: list[SeedExample] | None) -> dict[str, list[SeedExample]]:
    seed = list(seed_examples())
    out: dict[str, list[SeedExample]] = {}
    if sms_rows is not None:
        out[BASELINE] = [ex for ex in seed if "spam" not in ex.labels] + sms_rows
    out["previous_seed"] = [ex for ex in seed if not _from_spam_seed(ex)]
    out["seed_only"] = seed
    if sms_rows is not None:
        out["seed_plus_sms"] = seed + sms_rows
    return out


def _rate(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def spam_figures(rows: Sequence[SeedExample], scores: Sequence[dict[str, float]],
                 threshold: float) -> dict:
    y = [int("spam" in r.labels) for r in rows]
    p = [s["spam"] for s in scores]
    m = category_metrics(y, p, threshold)
    benign = [i for i, r in enumerate(rows) if not r.labels]
    return {
        "spam": m["positives"], "benign": len(benign),
        "roc_auc": m["roc_auc"], "pr_auc": m["pr_auc"],
        "recall": m["recall"], "precision": m["precision"], "f1": m["f1"],
        "benign_false_flag_rate": _rate([p[i] >= threshold for i in benign]),
        "benign_any_category_flag_rate": _rate(
            [max(scores[i].values()) >= threshold for i in benign]),
    }


def heldout_quality(classifier: Classifier, rows: list[SeedExample], threshold: float) -> dict:
    scores = [dict(s.scores) for s in classifier.classify([r.text for r in rows])]
    out = spam_figures(rows, scores, threshold)
    out["recall_by_kind"] = {
        kind: _rate([scores[i]["spam"] >= threshold for i, r in enumerate(rows) if r.kind == kind])
        for kind in SPAM_KINDS}
    out["false_flag_rate_by_kind"] = {
        kind: _rate([scores[i]["spam"] >= threshold for i, r in enumerate(rows) if r.kind == kind])
        for kind in BENIGN_LOOKALIKE_KINDS}
    out["missed_spam"] = sorted(r.text for r, s in zip(rows, scores)
                                if r.labels and s["spam"] < threshold)
    out["flagged_benign"] = sorted(r.text for r, s in zip(rows, scores)
                                   if not r.labels and s["spam"] >= threshold)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main() -> None:
    torch.set_num_threads(THREADS)
    heldout = spam_heldout()
    sms_rows: list[SeedExample] | None = None
    sms_heldout: list[SeedExample] | None = None
    skipped = None
    if public_sets.available():
        sms = public_sets.load("sms")
        sms_rows = sms_train_rows(sms)
        sms_heldout = public_sets.cap(sms.heldout, SMS_HELDOUT)
    else:
        skipped = (f"{public_sets.DATASETS} is absent: the sms_only baseline, seed_plus_sms "
                   "and the SMS held-out figures are skipped")
        print(skipped, flush=True)

    config = TrainConfig(holdout=0.0, epochs=EPOCHS)
    figures: dict[str, dict] = {}
    started = time.perf_counter()
    for name, rows in variants(sms_rows).items():
        folder = Path(tempfile.mkdtemp(prefix=f"steward-bench-spam-{name}-"))
        try:
            print(f"{name}: training on {len(rows)} rows", flush=True)
            card = build_bundle(folder, config=config, examples=rows, name=f"bench-spam-{name}",
                                threads=THREADS)
            classifier = Classifier.load(folder, threads=THREADS)
            threshold = card.thresholds["spam"]
            entry = {
                "train_rows": len(rows),
                "train_spam_rows": sum("spam" in r.labels for r in rows),
                "train_seconds": card.build_seconds,
                "threshold": threshold,
                "heldout": heldout_quality(classifier, heldout, threshold),
            }
            if sms_heldout is not None:
                scores = [dict(s.scores) for s in classifier.classify([r.text for r in sms_heldout])]
                entry["sms_heldout"] = spam_figures(sms_heldout, scores, threshold)
            figures[name] = entry
            h = entry["heldout"]
            print(f"{name}: built in {card.build_seconds:.0f}s; held-out spam ROC-AUC {h['roc_auc']} "
                  f"PR-AUC {h['pr_auc']} recall {h['recall']} benign false flags "
                  f"{h['benign_false_flag_rate']} by kind {h['recall_by_kind']}", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    ratios = None
    if BASELINE in figures:
        base = figures[BASELINE]["heldout"]
        # a rate the baseline has at 0 has no ratio (None): the difference says it instead
        ratios = {
            name: {key: _ratio(f["heldout"][key], base[key])
                   for key in ("roc_auc", "pr_auc", "recall", "benign_false_flag_rate")}
                  | {f"recall_{kind}": _ratio(f["heldout"]["recall_by_kind"][kind],
                                              base["recall_by_kind"][kind])
                     for kind in SPAM_KINDS}
                  | {"benign_false_flag_rate_minus_baseline": round(
                      f["heldout"]["benign_false_flag_rate"] - base["benign_false_flag_rate"], 4)}
            for name, f in figures.items() if name != BASELINE}

    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {THREADS} torch thread",
        "heldout_file": str(SPAM_HELDOUT_FILE.relative_to(Path(__file__).resolve().parents[1])),
        "heldout_rows": len(heldout),
        "heldout_spam_by_kind": {k: sum(r.kind == k for r in heldout) for k in SPAM_KINDS},
        "heldout_benign_by_kind": {k: sum(r.kind == k for r in heldout)
                                   for k in BENIGN_LOOKALIKE_KINDS},
        "sms_train_rows": len(sms_rows) if sms_rows is not None else None,
        "sms_heldout_rows": len(sms_heldout) if sms_heldout is not None else None,
        "skipped": skipped,
        "epochs": EPOCHS,
        "training": "build_bundle default recipe (top 2 encoder layers + head), holdout=0",
        "baseline": BASELINE if BASELINE in figures else None,
        "variants": figures,
        "ratio_to_baseline": ratios,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {name: {k: v for k, v in f["heldout"].items() if k not in ("missed_spam", "flagged_benign")}
               for name, f in figures.items()}
    print(json.dumps({"summary": summary, "ratio_to_baseline": ratios}, indent=2))


if __name__ == "__main__":
    main()
