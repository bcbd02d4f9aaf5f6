"""Any local Hugging Face text-classification model, used through configuration alone."""

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from schemas import CATEGORIES, Sentiment
from services.moderation.model.bundle import load_classifier
from services.moderation.model.external import ExternalClassifier
from services.moderation.model.train import base_model_path

TOXIC_BERT = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


@pytest.fixture(scope="module")
def threat_model(tmp_path_factory):
    """A tiny toxic-bert-shaped model whose head says 'threat' for every text."""
    folder = tmp_path_factory.mktemp("toxic-bert-like")
    tokenizer = AutoTokenizer.from_pretrained(base_model_path(), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=len(TOXIC_BERT),
                        id2label=dict(enumerate(TOXIC_BERT)), label2id={l: i for i, l in enumerate(TOXIC_BERT)},
                        problem_type="multi_label_classification")
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-8.0)
        model.classifier.bias[TOXIC_BERT.index("threat")] = 8.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_external_labels_are_mapped_onto_steward_categories(threat_model):
    classifier = load_classifier(threat_model, scheme="unitary/toxic-bert")
    assert isinstance(classifier, ExternalClassifier)
    [reading] = classifier.classify(["anything at all"])
    assert set(reading.scores) == set(CATEGORIES)
    assert reading.scores["threat"] > 0.99
    assert reading.scores["insult"] < 0.01 and reading.scores["spam"] == 0.0  # toxic-bert has no spam
    assert reading.sentiment is Sentiment.neutral


def test_an_unknown_scheme_is_refused_by_name(threat_model):
    with pytest.raises(ValueError, match="toxic-bert"):
        load_classifier(threat_model, scheme="perspective")
