import json

import pytest
from safetensors import safe_open

from services.moderation.model import bundle as bundle_mod
from services.moderation.model.bundle import default_bundle_dir, ensure_default_bundle, read_card
from services.moderation.model.labels import HEAD_LABELS
from services.moderation.model.train import BUNDLE_NAME, base_model_path, bundle_version


def test_card_describes_the_bundle(bundle_dir):
    card = read_card(bundle_dir)
    assert card.name == BUNDLE_NAME == "steward-default"
    assert card.version == bundle_version()
    assert bundle_dir.name == f"steward-default-{card.version}"
    assert card.labels == list(HEAD_LABELS)
    assert card.train_size >= 600 and card.heldout_size >= 50
    assert card.build_seconds > 0  # how fast it builds is measured by bench/model_bundle.py


def test_heldout_quality_is_in_the_card(bundle_dir):
    metrics = read_card(bundle_dir).metrics
    assert metrics["macro_roc_auc"] >= 0.95
    for name, cat in metrics["categories"].items():
        if cat["positives"] >= 5:
            assert cat["roc_auc"] >= 0.9, name
    assert metrics["benign_false_flag_rate"] <= 0.15
    assert metrics["sentiment_accuracy"] >= 0.75


def test_bundle_is_a_plain_hf_folder_with_trained_top_layers(bundle_dir):
    config = json.loads((bundle_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert [config["id2label"][str(i)] for i in range(len(HEAD_LABELS))] == list(HEAD_LABELS)
    with safe_open(bundle_dir / "model.safetensors", "pt") as new, \
            safe_open(base_model_path() / "model.safetensors", "pt") as base:
        def same(key):
            return bool((new.get_tensor(f"bert.{key}") == base.get_tensor(key)).all())

        # frozen lower layers are the base weights; the top layer and pooler were trained
        assert same("encoder.layer.0.attention.self.query.weight")
        assert not same("encoder.layer.5.output.dense.weight")
        assert not same("pooler.dense.weight")
        assert new.get_tensor("classifier.weight").shape == (len(HEAD_LABELS), 384)


def test_second_ensure_reuses_the_cache(bundle_dir, model_cache, monkeypatch):
    built_at = read_card(bundle_dir).built_at

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although a complete bundle was cached")

    monkeypatch.setattr(bundle_mod, "build_bundle", no_training)
    assert ensure_default_bundle(model_cache) == bundle_dir
    assert read_card(bundle_dir).built_at == built_at


def _fake_build(real_card_dir):
    """A stand-in builder that copies a real card: exercises the caching logic, no training."""
    calls = []

    def build(out_dir, *, progress=None):
        calls.append(out_dir)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "bundle.json"):
            (out_dir / name).write_bytes((real_card_dir / name).read_bytes()
                                         if name == "bundle.json" else b"x")
    return build, calls


def test_incomplete_dir_is_rebuilt_and_stale_temp_dirs_removed(bundle_dir, tmp_path, monkeypatch):
    build, calls = _fake_build(bundle_dir)
    monkeypatch.setattr(bundle_mod, "build_bundle", build)
    target = default_bundle_dir(tmp_path)
    target.mkdir()
    (target / "config.json").write_text("{}")  # a half bundle: no weights, no card
    stale = tmp_path / ".steward-default-build-dead"
    stale.mkdir()

    assert ensure_default_bundle(tmp_path) == target
    assert len(calls) == 1
    assert read_card(target).version == bundle_version()
    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [target.name]


def test_failed_build_leaves_nothing_under_the_real_name(tmp_path, monkeypatch):
    def crash(out_dir, *, progress=None):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt  # as if the build were killed

    monkeypatch.setattr(bundle_mod, "build_bundle", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_default_bundle(tmp_path)
    assert not default_bundle_dir(tmp_path).exists()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_card_with_other_version_is_not_reused(bundle_dir, tmp_path, monkeypatch):
    build, calls = _fake_build(bundle_dir)
    monkeypatch.setattr(bundle_mod, "build_bundle", build)
    target = default_bundle_dir(tmp_path)
    target.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (target / name).write_bytes(b"x")
    card = json.loads((bundle_dir / "bundle.json").read_text())
    (target / "bundle.json").write_text(json.dumps({**card, "version": "0.old"}))

    ensure_default_bundle(tmp_path)
    assert len(calls) == 1


def test_an_export_made_by_another_recipe_is_exported_again(bundle_dir, tmp_path, monkeypatch):
    from services.moderation.model import onnx_export

    source = default_bundle_dir(tmp_path)
    source.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "bundle.json"):
        (source / name).write_bytes((bundle_dir / name).read_bytes())
    exports = []

    def fake_export(src, out, *, quantize):
        exports.append(out)
        for name in ("config.json", "model.int8.onnx", "tokenizer.json"):
            (out / name).write_bytes(b"x")
        card = json.loads((src / "bundle.json").read_text())
        (out / "bundle.json").write_text(json.dumps({**card, "onnx": {"recipe": onnx_export.RECIPE}}))

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export)
    old = source.with_name(source.name + "-onnx")
    old.mkdir()
    for name in ("config.json", "model.int8.onnx", "tokenizer.json"):
        (old / name).write_bytes(b"x")
    card = json.loads((bundle_dir / "bundle.json").read_text())
    (old / "bundle.json").write_text(json.dumps({**card, "onnx": {"files": ["model.int8.onnx"]}}))

    assert bundle_mod.ensure_serving_bundle(tmp_path) == old
    assert len(exports) == 1 and bundle_mod.export_recipe(old) == onnx_export.RECIPE
    assert bundle_mod.ensure_serving_bundle(tmp_path) == old and len(exports) == 1  # now reused
