"""Any Hugging Face text-classification model on disk, through configuration alone.

Its labels are mapped onto Steward's categories by a crosswalk scheme (see crosswalk.py);
categories the model does not cover score 0, and sentiment is reported neutral. Nothing is
fetched from a hub: the folder must already be on disk.
"""

from __future__ import annotations

from pathlib import Path

import torch

from schemas import CATEGORIES, Sentiment
from services.moderation.model.crosswalk import map_scores, resolve_scheme
from services.moderation.model.labels import TextScores
from services.moderation.model.runner import truncated_indices

NEUTRAL = {Sentiment.negative: 0.0, Sentiment.neutral: 1.0, Sentiment.positive: 0.0}


class ExternalClassifier:
    def __init__(self, model, tokenizer, scheme: str, name: str, *, max_length: int = 128,
                 batch_size: int = 32) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.scheme = resolve_scheme(scheme)
        self.name = name
        self.version = str(getattr(model.config, "_name_or_path", "") or "local")
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        # A multi-label head scores each label on its own; a single-label one shares the mass.
        self.multi_label = model.config.problem_type == "multi_label_classification"
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: Path, scheme: str, *, threads: int | None = None) -> ExternalClassifier:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        path = Path(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, scheme, name=path.name)

    def classify(self, texts: list[str]) -> list[TextScores]:
        readings = []
        truncated = truncated_indices(self.tokenizer, texts, self.max_length)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                logits = self.model(**enc).logits
                probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
                for row in probs.tolist():
                    mapped = map_scores(self.scheme, dict(zip(self.labels, row, strict=True)))
                    readings.append(TextScores(
                        scores={c: float(mapped.get(c, 0.0)) for c in CATEGORIES},
                        sentiment=Sentiment.neutral, sentiment_scores=dict(NEUTRAL),
                        truncated=len(readings) in truncated,
                    ))
        return readings
