"""ONNX export and the ONNX Runtime classifier, against the torch classifier.

One export per session (~15 s on 2 cores); the checks reuse it.
"""

import json
import shutil

import numpy as np
import pytest

from schemas.moderation import CATEGORIES
from services.moderation.model.labels import HEAD_LABELS
from services.moderation.model.onnx_export import (
    FP32_FILE,
    INT8_FILE,
    OPSET,
    export_onnx,
)
from services.moderation.model.onnx_runner import OnnxClassifier
from services.moderation.model.seed import seed_examples, split
from services.moderation.model.train import TrainConfig, roc_auc

pytest.importorskip("onnxruntime")

TEXTS = [
    "Thanks so much for the help yesterday, really appreciate it!",
    "ok",
    "You are a worthless idiot and everyone hates you",
    "I know where you live and I will kill you",
    # far past 128 tokens: exercises truncation and the longest sequence axis
    "BUY CHEAP FOLLOWERS NOW!!! click http://spam.example to win free money " * 30,
]
BENIGN = [
    "Thanks so much for the help yesterday, really appreciate it!",
    "Does anyone know what time the meeting starts?",
    "Happy birthday, hope you have a great day",
]
HARMFUL = [
    "You are a worthless idiot and everyone hates you",
    "I know where you live and I will kill you",
    "Shut up you stupid moron",
    "BUY CHEAP FOLLOWERS NOW!!! click http://spam.example to win free money",
]


@pytest.fixture(scope="session")
def onnx_dir(bundle_dir, tmp_path_factory):
    return export_onnx(bundle_dir, tmp_path_factory.mktemp("onnx") / "steward-default")


@pytest.fixture(scope="session")
def onnx_fp32(onnx_dir):
    return OnnxClassifier.load(onnx_dir, int8=False, threads=2)


@pytest.fixture(scope="session")
def onnx_int8(onnx_dir):
    return OnnxClassifier.load(onnx_dir, int8=True, threads=2)


def test_export_folder_and_card(onnx_dir, bundle_dir):
    for name in (FP32_FILE, INT8_FILE, "tokenizer.json", "bundle.json"):
        assert (onnx_dir / name).is_file(), name
    card = json.loads((onnx_dir / "bundle.json").read_text())
    original = json.loads((bundle_dir / "bundle.json").read_text())
    assert {k: v for k, v in card.items() if k != "onnx"} == original
    assert card["onnx"]["files"] == [FP32_FILE, INT8_FILE]
    assert card["onnx"]["opset"] == OPSET == 17
    assert card["onnx"]["quantization"]["weight_type"] == "QInt8"
    # int8 weights: roughly a quarter of the fp32 file
    assert (onnx_dir / INT8_FILE).stat().st_size < 0.4 * (onnx_dir / FP32_FILE).stat().st_size


def test_graph_inputs_are_what_the_tokenizer_produces(onnx_fp32):
    enc = onnx_fp32.tokenizer(["x"], return_tensors="np")
    assert set(onnx_fp32.input_names) == set(enc.keys())
    assert {"input_ids", "attention_mask"} <= set(onnx_fp32.input_names)
    shapes = {i.name: i.shape for i in onnx_fp32.session.get_inputs()}
    assert all(isinstance(d, str) for shape in shapes.values() for d in shape)  # dynamic


def test_same_surface_as_torch_classifier(onnx_int8, classifier):
    assert onnx_int8.name == classifier.name
    assert onnx_int8.version == classifier.version
    out = onnx_int8.classify(["hello", "you idiot"])
    assert len(out) == 2 and set(out[0].scores) == set(CATEGORIES)
    assert abs(sum(out[0].sentiment_scores.values()) - 1) < 1e-6
    scores, ms = onnx_int8.classify_timed(["hello"])
    assert len(scores) == 1 and ms >= 0
    assert onnx_int8.classify([]) == []


@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_fp32_logits_match_torch(onnx_fp32, classifier, batch_size):
    onnx_fp32.batch_size = batch_size  # dynamic batch (and, per batch, sequence) axes
    try:
        got = onnx_fp32.logits(TEXTS)
    finally:
        onnx_fp32.batch_size = 32
    want = classifier.logits(TEXTS).numpy()
    assert got.shape == (len(TEXTS), len(HEAD_LABELS))
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)


def test_int8_agrees_on_clear_texts(onnx_int8, classifier):
    texts = BENIGN + HARMFUL
    want = classifier.classify(texts)
    got = onnx_int8.classify(texts)
    for text, w, g in zip(texts, want, got):
        assert g.sentiment == w.sentiment, text
        # any category flagged: same decision
        assert max(g.scores.values()) >= 0.5 if text in HARMFUL else max(g.scores.values()) < 0.5
        assert (max(w.scores.values()) >= 0.5) == (text in HARMFUL)
        for cat in CATEGORIES:
            if abs(w.scores[cat] - 0.5) >= 0.3:  # torch is decisive: int8 on the same side
                assert (g.scores[cat] >= 0.5) == (w.scores[cat] >= 0.5), (text, cat)


def _aucs(model, examples):
    scores = model.classify([ex.text for ex in examples])
    out = {}
    for cat in CATEGORIES:
        auc = roc_auc([int(cat in ex.labels) for ex in examples], [s.scores[cat] for s in scores])
        if auc is not None:
            out[cat] = auc
    return out


def test_int8_heldout_auc_close_to_fp32(onnx_fp32, onnx_int8, bundle_dir, record_property):
    card = json.loads((bundle_dir / "bundle.json").read_text())
    _, heldout = split(seed_examples(), TrainConfig().holdout, card["training"]["seed"])
    assert len(heldout) == card["heldout_size"]
    fp32, int8 = _aucs(onnx_fp32, heldout), _aucs(onnx_int8, heldout)
    assert fp32.keys() == int8.keys() and fp32
    macro_fp32 = sum(fp32.values()) / len(fp32)
    macro_int8 = sum(int8.values()) / len(int8)
    diff = abs(macro_int8 - macro_fp32)
    record_property("macro_auc_fp32", round(macro_fp32, 4))
    record_property("macro_auc_int8", round(macro_int8, 4))
    record_property("macro_auc_diff", round(diff, 4))
    print(f"held-out macro ROC-AUC fp32 {macro_fp32:.4f} int8 {macro_int8:.4f} diff {diff:.4f}; "
          + ", ".join(f"{c} {int8[c] - fp32[c]:+.4f}" for c in fp32))
    assert diff < 0.02
    # the card's torch metric (rounded to 4 places) is what the fp32 graph reproduces
    assert abs(macro_fp32 - card["metrics"]["macro_roc_auc"]) < 1e-3
    for cat in fp32:
        assert abs(int8[cat] - fp32[cat]) < 0.05, cat


def test_missing_int8_file_is_a_clear_error(onnx_dir, tmp_path):
    for name in ("bundle.json", "tokenizer.json", "tokenizer_config.json", "config.json"):
        if (onnx_dir / name).exists():
            shutil.copy2(onnx_dir / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match=INT8_FILE):
        OnnxClassifier.load(tmp_path, int8=True)


def test_a_text_longer_than_the_model_reads_is_scored_by_its_start_and_says_so(onnx_int8, classifier):
    long_text = "you are wonderful and I like this community a lot. " * 40  # ~480 tokens
    near_limit = "ok " * 60  # 182 characters but only 62 tokens: long in characters only
    for runner in (onnx_int8, classifier):
        readings = runner.classify(["short and fine", long_text, near_limit])
        assert [r.truncated for r in readings] == [False, True, False]
    # The start decides: the same first 128 tokens give the same scores.
    start = " ".join(long_text.split()[:120])
    first, whole = onnx_int8.classify([start + " trailing", long_text])
    assert whole.scores == pytest.approx(onnx_int8.classify([long_text])[0].scores)
    assert abs(whole.scores["toxicity"] - first.scores["toxicity"]) < 0.05
