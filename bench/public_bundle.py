"""Benchmark: a bundle trained on the public sets, its held-out quality, int8 against fp32.

Run: ``.venv/bin/python -m bench.public_bundle`` (needs ../shared/datasets; about 15
minutes on 2 cores). In one run it:

1. splits every public set of :mod:`services.moderation.model.public_sets` into train and held-out rows;
2. trains ``steward-public`` (the default recipe: top two encoder layers and the head) on
   the seed set plus at most ``BENCH_PER_SET`` training rows of each public set;
3. exports it to ONNX (fp32 and int8);
4. scores every held-out split with the default seed-only bundle (the baseline), the new
   bundle on torch, and its ONNX fp32 and int8 exports: ROC-AUC and PR-AUC of each set's
   focus category, macro-F1 of sentiment, and the largest |int8 - fp32| AUC difference.

Writes ``bench/results/public_bundle.json`` and the same figures into the cards of the
new bundle and its export (``metrics.public_heldout`` of ``bundle.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from services.moderation.model import public_sets
from bench.cards import stamp_card
from services.moderation.model import ensure_serving_bundle, load_classifier
from services.moderation.model.bundle import export_recipe, read_card
from services.moderation.model.evaluation import category_metrics, macro_f1
from services.moderation.model.onnx_export import RECIPE, export_onnx
from services.moderation.model.seed import seed_examples
from services.moderation.model.train import (
    CARD_FILE,
    TrainConfig,
    build_bundle,
    examples_hash,
)

RESULTS = Path(__file__).with_name("results") / "public_bundle.json"
MODELS = Path(".steward/models")
PER_SET = int(os.environ.get("BENCH_PER_SET", "1500"))
HELDOUT_PER_SET = int(os.environ.get("BENCH_HELDOUT_PER_SET", "1000"))
EPOCHS = int(os.environ.get("BENCH_EPOCHS", "4"))


def set_quality(classifier, rows, focus: str) -> dict:
    readings = classifier.classify([row.text for row in rows])
    if focus == "sentiment":
        f1 = macro_f1([r.sentiment.value for r in rows], [s.sentiment.value for s in readings])
        return {"sentiment_macro_f1": round(f1, 4)}
    metrics = category_metrics([int(focus in r.labels) for r in rows],
                               [float(s.scores[focus]) for s in readings])
    return {key: metrics[key] for key in ("positives", "negatives", "roc_auc", "pr_auc", "f1")}


def quality(classifier, sets: list[public_sets.PublicSet]) -> dict:
    started = time.perf_counter()
    figures = {s.name: set_quality(classifier, public_sets.cap(s.heldout, HELDOUT_PER_SET), s.focus)
               for s in sets}
    aucs = [f["roc_auc"] for f in figures.values() if f.get("roc_auc") is not None]
    return {"sets": figures, "mean_roc_auc": round(sum(aucs) / len(aucs), 4),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    if not public_sets.available():
        raise SystemExit(f"{public_sets.DATASETS} is absent: nothing to train or measure on")
    sets = [public_sets.load(name) for name in public_sets.READERS]
    train = [*seed_examples(), *(row for s in sets for row in public_sets.cap(s.train, PER_SET))]
    config = TrainConfig(holdout=0.0, epochs=EPOCHS)
    bundle = MODELS / f"steward-public-{examples_hash(train)[:10]}"
    if not (bundle / CARD_FILE).is_file():
        build_bundle(bundle, config=config, examples=train, name="steward-public",
                     data_files=[f"../shared/datasets ({', '.join(public_sets.READERS)})"],
                     progress=lambda msg: print(msg, flush=True))
    onnx = bundle.with_name(bundle.name + "-onnx")
    if export_recipe(onnx) != RECIPE:
        shutil.rmtree(onnx, ignore_errors=True)
        export_onnx(bundle, onnx, quantize=True)

    runs = {
        "default_bundle_int8 (baseline)": load_classifier(ensure_serving_bundle(MODELS), threads=2),
        "public_bundle_torch": load_classifier(bundle, threads=2),
        "public_bundle_onnx_fp32": None,
        "public_bundle_onnx_int8": load_classifier(onnx, threads=2),
    }
    from services.moderation.model.onnx_runner import OnnxClassifier

    runs["public_bundle_onnx_fp32"] = OnnxClassifier.load(onnx, int8=False, threads=2)
    figures = {}
    for name, classifier in runs.items():
        figures[name] = quality(classifier, sets)
        print(name, json.dumps(figures[name]), flush=True)

    int8, fp32 = figures["public_bundle_onnx_int8"]["sets"], figures["public_bundle_onnx_fp32"]["sets"]
    gaps = {name: round(abs(int8[name]["roc_auc"] - fp32[name]["roc_auc"]), 4)
            for name in int8 if int8[name].get("roc_auc") is not None}
    baseline = figures["default_bundle_int8 (baseline)"]["mean_roc_auc"]
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "bundle": bundle.name,
        "train_rows": len(train),
        "train_rows_per_public_set": PER_SET,
        "heldout_rows_per_set": HELDOUT_PER_SET,
        "epochs": EPOCHS,
        "train_seconds": read_card(bundle).build_seconds,  # from its card: a cached bundle is reused
        "focus": {s.name: s.focus for s in sets},
        "quality": figures,
        "int8_vs_fp32_roc_auc_abs_diff": gaps,
        "int8_vs_fp32_max_abs_diff": max(gaps.values()),
        "mean_roc_auc_ratio_to_baseline": round(
            figures["public_bundle_onnx_int8"]["mean_roc_auc"] / baseline, 3),
    }
    stamp_card(bundle, "public_heldout", results)
    stamp_card(onnx, "public_heldout", results)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "quality"}, indent=2))


if __name__ == "__main__":
    main()
