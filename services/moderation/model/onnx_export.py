"""Export a bundle to ONNX (fp32 and, optionally, dynamically quantized int8).

The exported graph returns the head's raw logits in ``HEAD_LABELS`` order; decoding
(sigmoid for categories, softmax for sentiment) stays in Python via ``labels.decode``, as
for the torch :class:`~.classifier.Classifier`. The output folder is self-contained:
``model.onnx`` (+ ``model.int8.onnx``), the tokenizer files and a copy of ``bundle.json``
with an added ``onnx`` section, so :class:`~.onnx_runner.OnnxClassifier` can load it
without the torch weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from services.moderation.model.labels import HEAD_LABELS
from services.moderation.model.train import CARD_FILE

OPSET = 17
# Names the export recipe; a cached export made by another recipe is rebuilt.
# Per-channel int8 weights: per-tensor ones moved held-out ROC-AUC by up to 0.023 on the
# public sets (bench/public_bundle.py), per-channel by at most 0.0035, at the same speed.
RECIPE = "opset17-dynamic-int8-per-channel"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OUTPUT_NAME = "logits"
# Tokenizer files that may be in a bundle; whichever exist are copied.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "added_tokens.json",
)
# config.json is small and lets tooling (and AutoTokenizer) see the model type.
EXTRA_FILES = ("config.json",)


class _LogitsOnly(torch.nn.Module):
    """Positional inputs in tokenizer order, a single ``logits`` output."""

    def __init__(self, model, input_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).logits


def export_onnx(bundle_dir: Path, out_dir: Path, *, quantize: bool = True) -> Path:
    """Write ``model.onnx`` (and ``model.int8.onnx`` when ``quantize``) plus the tokenizer
    files and an annotated ``bundle.json`` into ``out_dir``; returns ``out_dir``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    card = json.loads((bundle_dir / CARD_FILE).read_text(encoding="utf-8"))
    # eager attention traces to plain MatMul/Softmax ops that ORT fuses and quantizes well.
    model = AutoModelForSequenceClassification.from_pretrained(
        bundle_dir, local_files_only=True, attn_implementation="eager"
    ).eval()
    labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    if labels != HEAD_LABELS:
        raise ValueError(f"bundle head labels {labels} do not match {HEAD_LABELS}")
    tokenizer = AutoTokenizer.from_pretrained(bundle_dir, local_files_only=True)

    sample = tokenizer(["an example message to trace", "short"], padding=True,
                       return_tensors="pt")
    input_names = tuple(sample.keys())  # input_ids, token_type_ids, attention_mask for BERT
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = out_dir / FP32_FILE
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    dynamic_axes[OUTPUT_NAME] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            _LogitsOnly(model, input_names),
            tuple(sample[name] for name in input_names),
            str(fp32_path),
            input_names=list(input_names),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    files = [FP32_FILE]
    quantization = None
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32_path), str(out_dir / INT8_FILE), weight_type=QuantType.QInt8,
                         per_channel=True)
        files.append(INT8_FILE)
        quantization = {"method": "onnxruntime.quantization.quantize_dynamic",
                        "weight_type": "QInt8", "per_channel": True, "file": INT8_FILE}

    for name in TOKENIZER_FILES + EXTRA_FILES:
        if (bundle_dir / name).is_file():
            shutil.copy2(bundle_dir / name, out_dir / name)
    import onnx

    card["onnx"] = {
        "recipe": RECIPE,
        "files": files,
        "opset": OPSET,
        "inputs": list(input_names),
        "output": OUTPUT_NAME,
        "dynamic_axes": ["batch", "sequence"],
        "quantization": quantization,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
    }
    # written last, like the bundle's own card
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2), encoding="utf-8")
    return out_dir
