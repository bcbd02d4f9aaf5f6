"""Score texts with an exported bundle on ONNX Runtime (see :mod:`.onnx_export`).

Same surface as the torch :class:`~.classifier.Classifier` (``name``, ``version``,
``classify``, ``classify_timed``), so either can back the moderation service.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.moderation.model.bundle import read_card
from services.moderation.model.labels import HEAD_LABELS
from services.moderation.model.runner import BundleRunner, length_sorted_batches
from services.moderation.model.onnx_export import FP32_FILE, INT8_FILE
from services.moderation.model.train import BundleCard


class OnnxClassifier(BundleRunner):
    """One ONNX session. ``InferenceSession.run`` is thread-safe, but calls share the
    intra-op pool; like the torch classifier, load once per process and call from one
    worker."""

    def __init__(self, session, tokenizer, card: BundleCard, *, max_length: int = 128,
                 batch_size: int = 32, model_file: str = FP32_FILE):
        if tuple(card.labels) != HEAD_LABELS:
            raise ValueError(f"bundle head labels {tuple(card.labels)} do not match {HEAD_LABELS}")
        self.session = session
        self.tokenizer = tokenizer
        self.card = card
        self.max_length = max_length
        self.batch_size = batch_size
        self.model_file = model_file
        self.input_names = tuple(i.name for i in session.get_inputs())

    # batch_size: texts per forward pass after length sorting; 32 measured faster than 64 on
    # 2 cores (smaller activations stay in cache).
    @classmethod
    def load(cls, path: Path, *, int8: bool = True, threads: int = 2, max_length: int = 128,
             batch_size: int = 32) -> OnnxClassifier:
        """Load an exported folder; ``threads`` sets this session's intra-op pool only."""
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = Path(path)
        card = read_card(path)  # extra keys (the ``onnx`` section) are ignored by the model
        model_file = INT8_FILE if int8 else FP32_FILE
        if not (path / model_file).is_file():
            raise FileNotFoundError(f"{path / model_file} missing (exported without quantize?)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep rather than spin: the event loop, broker client and (on
        # small hosts) the broker itself need those cores between model calls.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path / model_file), sess_options=opts,
                                       providers=["CPUExecutionProvider"])
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(session, tokenizer, card, max_length=max_length, batch_size=batch_size,
                   model_file=model_file)

    def logits(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), len(HEAD_LABELS)), dtype=np.float32)
        for idx in length_sorted_batches(texts, self.batch_size):
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            feed = {name: np.asarray(enc[name], dtype=np.int64) for name in self.input_names}
            (batch_logits,) = self.session.run(None, feed)
            out[idx] = batch_logits
        return out
