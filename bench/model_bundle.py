"""Benchmark: build the default model bundle from scratch and measure its inference speed.

Run: ``.venv/bin/python -m bench.model_bundle``. Prints the figures and writes
``bench/results/model_bundle.json``. Throughput is measured side by side in one run, as a
ratio against batch size 1 (the baseline), because these machines are noisy.
"""

import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from services.demo.community import ANSWERS, CHATTER, HARMFUL, QUESTIONS
from services.moderation.model import Classifier, build_bundle

RESULTS = Path(__file__).with_name("results") / "model_bundle.json"
TEXTS = [*QUESTIONS, *ANSWERS, *CHATTER, *(text for _, text in HARMFUL)] * 8


def texts_per_second(classifier: Classifier, batch: int, rounds: int = 3) -> float:
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for start in range(0, len(TEXTS), batch):
            classifier.classify(TEXTS[start : start + batch])
        best = max(best, len(TEXTS) / (time.perf_counter() - started))
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        card = build_bundle(Path(folder) / "bundle")
        build_s = time.perf_counter() - started
        classifier = Classifier.load(Path(folder) / "bundle", threads=2)
        classifier.classify(TEXTS[:8])  # warm-up
        speeds = {batch: texts_per_second(classifier, batch) for batch in (1, 8, 32)}
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 2 threads",
        "bundle_version": card.version,
        "train_examples": card.train_size,
        "build_seconds": round(build_s, 1),
        "heldout_metrics": card.metrics,
        "texts_per_second": {str(b): round(v, 1) for b, v in speeds.items()},
        "speedup_vs_batch_1": {str(b): round(v / speeds[1], 2) for b, v in speeds.items()},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
