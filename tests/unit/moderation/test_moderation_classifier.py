import socket

import pytest
import torch

from schemas.moderation import CATEGORIES, Sentiment
from services.moderation.model import Classifier
from services.moderation.model.seed import seed_examples

# Written for these tests, not taken from the seed set (checked below).
HARMFUL = [
    ("you are a complete waste of everyone's time, idiot", "insult"),
    ("what an absolute buffoon, go back to school", "insult"),
    ("nobody here can stand you, you gormless nitwit", "insult"),
    ("I'm going to track you down and hurt you badly", "threat"),
    ("if I ever see you at the office I will break your nose", "threat"),
    ("keep posting and I'll come to your house and beat you senseless", "threat"),
    ("somalis are animals and should be banned from this forum", "identity_attack"),
    ("buddhists are filthy liars, every single one", "identity_attack"),
    ("roma people are thieving scum and should be kicked out", "identity_attack"),
    ("send me a photo of you in your underwear tonight", "sexual"),
    ("hey gorgeous, send me some spicy pics of yourself 😏", "sexual"),
    ("🤑 earn 2000 dollars weekly trading forex, text me on whatsapp now", "spam"),
    ("free followers and likes, cheapest prices, visit grow-fast.shop", "spam"),
    ("CLICK NOW >>> win a free PS5 at giveaway-zone.net", "spam"),
    ("go jump off a cliff and die, no one will cry", "severe_toxicity"),
    ("you should kill yourself, honestly", "severe_toxicity"),
    ("shut the f up you brainless twit", "toxicity"),
]

BENIGN = [
    "could someone point me to the changelog for version 4?",
    "the workshop starts at 10 in room B, coffee is provided",
    "thanks a lot, your answer solved my problem",
    "I'll kill this flaky test once and for all",
    "that demo absolutely killed, great job",
    "the filter should catch slurs against jews and muslims quicker",
    "our moderators removed three spam posts today",
    "I don't agree with the new logo, the old one was cleaner",
    "the hindu temple is hosting a food drive this weekend",
    "does the meetup have vegetarian food options?",
    "I'm going to destroy my old hard drive before recycling it",
    "great point about caching, I hadn't thought of that",
    "please don't post referral links here, it's against the rules",
    "the documentary about the holocaust was hard to watch but important",
]

SENTIMENT = [
    ("thanks a lot, your answer solved my problem", Sentiment.positive),
    ("I love this community, you folks are the best", Sentiment.positive),
    ("congrats on shipping v2, it looks fantastic", Sentiment.positive),
    ("the server crashed again and I lost my work, this is awful", Sentiment.negative),
    ("I'm really upset that my ticket was closed without an answer", Sentiment.negative),
    ("this update is slow and buggy, very disappointing", Sentiment.negative),
    ("the workshop starts at 10 in room B, coffee is provided", Sentiment.neutral),
    ("could someone point me to the changelog for version 4?", Sentiment.neutral),
]


def test_test_sentences_are_unseen():
    seen = {ex.text.lower() for ex in seed_examples()}
    texts = [t for t, _ in HARMFUL] + BENIGN + [t for t, _ in SENTIMENT]
    assert not [t for t in texts if t.lower() in seen]


def test_loads_without_network(bundle_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    clf = Classifier.load(bundle_dir)
    assert clf.name == "steward-default"
    assert clf.version and bundle_dir.name.endswith(clf.version)
    assert clf.classify(["hello"])[0].scores.keys() == set(CATEGORIES)


@pytest.mark.parametrize(("text", "category"), HARMFUL)
def test_harmful_unseen_text_gets_its_category(classifier, text, category):
    scores = classifier.classify([text])[0].scores
    assert scores[category] > 0.5, scores


@pytest.mark.parametrize("text", BENIGN)
def test_benign_unseen_text_stays_below_threshold(classifier, text):
    scores = classifier.classify([text])[0].scores
    assert max(scores.values()) < 0.5, scores


@pytest.mark.parametrize(("text", "sentiment"), SENTIMENT)
def test_sentiment(classifier, text, sentiment):
    out = classifier.classify([text])[0]
    assert out.sentiment is sentiment, out.sentiment_scores
    assert sum(out.sentiment_scores.values()) == pytest.approx(1.0)


def test_batch_keeps_order_and_matches_single_calls(classifier):
    texts = [t for t, _ in HARMFUL[:4]] + BENIGN[:4] + ["", "ok " * 300]
    batch = classifier.classify(texts)
    assert len(batch) == len(texts)
    for text, got in zip(texts, batch):
        alone = classifier.classify([text])[0]
        for c in CATEGORIES:
            assert got.scores[c] == pytest.approx(alone.scores[c], abs=1e-4)
    assert classifier.classify([]) == []


def test_matches_plain_transformers_loading(bundle_dir, classifier):
    # the bundle is a normal HF folder: generic loading gives the same logits
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(bundle_dir, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(bundle_dir, local_files_only=True)
    text = HARMFUL[0][0]
    with torch.inference_mode():
        logits = model.eval()(**tok([text], return_tensors="pt")).logits[0]
    assert torch.allclose(logits, classifier.logits([text])[0], atol=1e-4)


def test_classify_timed_reports_latency(classifier):
    scores, ms_per_text = classifier.classify_timed(BENIGN[:3])
    assert len(scores) == 3
    assert 0 < ms_per_text < 5000
