"""Everyday short chat must not wake a moderator; short real threats and abuse must.

Written for these tests, not taken from the seed set (checked below).
"""

import pytest

from services.moderation.model.seed import seed_examples

BENIGN_SHORT = [
    "It is, see you there!",
    "yes it is, see you at 8",
    "see you at the pub later!",
    "cool cool, on my way now",
    "sounds perfect, thank you!",
    "leaving the office now, be there soon",
    "call me once you're out of the meeting",
    "we're by the fountain, come find us",
    "haha same, so tired",
    "lol yes please",
    "👍👍",
    "😂😂 stop",
    "okie dokie",
    "this is fucking brilliant, well done",
    "i'll murder you at mario kart 😂",
    "you're so going down at bowling on sunday lol",
    "this code is garbage lol, I'll rewrite it",
    "the refactor is a disaster, let's revert it",
    "kill the old worker and spin up a new one",
    "I'll see you in the finals, good luck!",
    "miss you, see you next weekend ❤️",
    "just got home, thanks for tonight",
]

HARMFUL_SHORT = [
    ("I'm going to come to your house and hurt you", "threat"),
    ("I will break your neck when I see you", "threat"),
    ("say one more word and you're dead, I know where you live", "threat"),
    ("you're a brain dead moron", "insult"),
    ("shut up you pathetic loser", "insult"),
    ("go kill yourself, nobody wants you", "severe_toxicity"),
    ("send me naked pics right now", "sexual"),
    ("WIN a free holiday! text GO to 80123 now to claim", "spam"),
]


def test_short_reply_sentences_are_unseen():
    seen = {ex.text.lower() for ex in seed_examples()}
    texts = BENIGN_SHORT + [t for t, _ in HARMFUL_SHORT]
    assert not [t for t in texts if t.lower() in seen]


@pytest.mark.parametrize("text", BENIGN_SHORT)
def test_benign_short_reply_stays_below_threshold(classifier, text):
    scores = classifier.classify([text])[0].scores
    assert max(scores.values()) < 0.5, scores


@pytest.mark.parametrize(("text", "category"), HARMFUL_SHORT)
def test_harmful_short_text_gets_its_category(classifier, text, category):
    scores = classifier.classify([text])[0].scores
    assert scores[category] > 0.5, scores
