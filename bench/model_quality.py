"""Benchmark: how often the default bundle and policy flag real public text.

Run: ``.venv/bin/python -m bench.model_quality`` (needs ../shared/datasets). Writes
``bench/results/model_quality.json``. "Flagged" is what a community would see: the
built-in policy raises an incident. Benign sets give the false-flag rate; harmful sets the
catch rate. The baseline, measured in the same run, is the flag rate on benign text, so
``ratio_to_benign`` says how much more often harmful text is flagged.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

from bench import datasets
from services.moderation.model import Classifier, ensure_default_bundle
from services.moderation.policy.evaluate import evaluate
from services.moderation.policy.load import built_in_policy

RESULTS = Path(__file__).with_name("results") / "model_quality.json"
SETS = {
    "sms_ham (benign)": lambda: datasets.sms("ham"),
    "olid_NOT (benign)": lambda: datasets.olid("NOT"),
    "tweeteval_sentiment (benign)": datasets.tweeteval_sentiment,
    "olid_OFF (offensive)": lambda: datasets.olid("OFF"),
    "sms_spam (spam)": lambda: datasets.sms("spam"),
}


def flag_rate(classifier: Classifier, texts: list[str], category: str | None = None) -> float:
    policy = built_in_policy()
    flagged = 0
    for reading in classifier.classify(texts):
        decision = evaluate(policy, reading.scores)
        flagged += bool(decision and (category is None or category in decision.categories))
    return flagged / len(texts)


def main() -> None:
    bundle = ensure_default_bundle(Path(".steward/models"))
    classifier = Classifier.load(bundle, threads=2)
    rates: dict[str, float | None] = {}
    for name, load in SETS.items():
        texts = load()
        rates[name] = None if texts is None else round(flag_rate(classifier, texts), 4)
    benign = [v for k, v in rates.items() if "benign" in k and v is not None]
    baseline = sum(benign) / len(benign) if benign else None
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bundle": bundle.name,
        "sample_per_set": datasets.SAMPLE,
        "flag_rate": rates,
        "mean_benign_flag_rate": round(baseline, 4) if baseline else None,
        "ratio_to_benign": {k: round(v / baseline, 2) for k, v in rates.items()
                            if v is not None and baseline and "benign" not in k},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
