"""The labeled seed set the default model is trained on.

Sources, all written for this project:
- ``seed_messages.txt``: hand-written community messages under label headers;
- ``seed_spam.txt``: hand-written spam as communities see it (self-promotion, crypto and
  giveaway scams, phishing links, mass mentions) and its benign look-alikes (links,
  @mentions, crypto talk, official giveaways, talk about scams); its headers also name the
  ``kind`` of each line (``SPAM_KINDS``, ``BENIGN_LOOKALIKE_KINDS``);
- templates below: combinatorial phrasings so that the head sees the same intent in many
  surface forms (and group names, violent verbs or links in benign contexts too, so it
  cannot get away with keyword spotting);
- noise: casing, typos, emoji and @mentions applied to copies of hand-written lines,
  because chat text is messy and the held-out texts will be too.

Every example carries a ``group``: a noised copy shares its source's group, so a held-out
split by group never tests the model on a near-duplicate of something it trained on.
Everything is deterministic (a fixed ``random.Random``), so the data hash is stable.

``spam_heldout.jsonl`` is a separate hand-written set of spam and look-alike benign
messages, worded apart from the seed lines; it is never part of ``seed_examples()`` and
only measures (``bench/spam.py``), see :func:`spam_heldout`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from schemas.moderation import CATEGORIES, Sentiment

SEED_FILE = Path(__file__).with_name("seed_messages.txt")
SPAM_SEED_FILE = Path(__file__).with_name("seed_spam.txt")
SPAM_HELDOUT_FILE = Path(__file__).with_name("spam_heldout.jsonl")
_HEADER = re.compile(r"^\[labels:\s*(?P<labels>[^|]*)\|\s*sentiment:\s*(?P<sentiment>\w+)\s*"
                     r"(?:\|\s*kind:\s*(?P<kind>\w+)\s*)?\]$")

# The spam communities see, and the benign messages that share its surface (a link, an
# @mention, a coin name, the word "giveaway") without being spam.
SPAM_KINDS = ("self_promo", "crypto_giveaway", "phishing", "mass_mention")
BENIGN_LOOKALIKE_KINDS = ("benign_link", "benign_mention", "benign_crypto",
                          "benign_announcement", "benign_scam_talk", "benign_share")


@dataclass(frozen=True)
class SeedExample:
    text: str
    labels: frozenset[str]
    sentiment: Sentiment
    group: str
    handwritten: bool
    kind: str | None = None  # a SPAM_KINDS / BENIGN_LOOKALIKE_KINDS name, where known


def _parse_labels(raw: str) -> frozenset[str]:
    names = [n.strip() for n in raw.split(",") if n.strip() and n.strip() != "-"]
    unknown = set(names) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories in seed file: {sorted(unknown)}")
    return frozenset(names)


def _check_kind(kind: str | None, labels: frozenset[str], where: str) -> None:
    if kind is None:
        return
    allowed = SPAM_KINDS if "spam" in labels else BENIGN_LOOKALIKE_KINDS if not labels else ()
    if kind not in allowed:
        raise ValueError(f"{where}: kind {kind!r} does not fit labels {sorted(labels)}")


def _read_handwritten(path: Path = SEED_FILE, prefix: str = "hw") -> list[SeedExample]:
    out: list[SeedExample] = []
    labels: frozenset[str] | None = None
    sentiment: Sentiment | None = None
    kind: str | None = None
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if m := _HEADER.match(line):
            labels, sentiment = _parse_labels(m["labels"]), Sentiment(m["sentiment"])
            kind = m["kind"]
            _check_kind(kind, labels, f"{path}:{lineno}")
            continue
        if labels is None or sentiment is None:
            raise ValueError(f"{path}:{lineno}: message before the first header")
        out.append(SeedExample(line, labels, sentiment, f"{prefix}:{lineno}", True, kind))
    return out


# --- templates ------------------------------------------------------------------------
# Group names appear on both sides (attacks and ordinary community life) on purpose.
GROUPS = [
    "muslims", "jews", "christians", "hindus", "sikhs", "immigrants", "refugees",
    "black people", "asians", "mexicans", "arabs", "africans", "gay people",
    "trans people", "lesbians", "women", "indians", "chinese people", "latinos",
    "disabled people", "catholics", "atheists", "romanians", "nigerians",
]
USERS = ["@alex", "@jordan_k", "@mods", "@sam", "@priya", "@devguy99", "@lena"]

_TASKS = [
    "rotate the api keys", "export my data as csv", "run the tests locally",
    "upgrade to version 3", "join the beta", "link my github account",
    "set up two factor auth", "get the dev container working", "file a bug report",
    "change the notification settings", "deploy this to kubernetes", "get a refund",
    "cancel my subscription", "enable debug logging", "add a custom domain",
    "translate the docs", "book a room for the meetup", "become a moderator",
    "write a plugin", "profile memory usage", "pin a message", "migrate from v1",
]
_QUESTION_FORMS = [
    "how do I {t}?", "is there a way to {t}", "what's the easiest way to {t}?",
    "anyone know how to {t}", "where are the docs on how to {t}?",
    "Can someone explain how to {t}? thanks in advance",
]
_GREETINGS = ["", "hi all, ", "hey folks! ", "quick q: ", "Hello, ", "sorry if this is obvious but ",
              "morning! ", "noob question: "]

_THANKS = ["thanks", "thank you so much", "ty", "many thanks", "big thanks", "cheers", "thx"]
_THANKS_REASONS = [
    "for the help!", "for the quick answer", "that worked perfectly", "for organizing the event",
    "for the detailed write-up", ", you saved my weekend", "for fixing the docs 🙏",
    "for the warm welcome", ", great explanation",
]

_BENIGN_GROUP_FORMS = [
    ("the {g} community meetup is on saturday, all welcome", Sentiment.neutral),
    ("happy to see more {g} joining the project!", Sentiment.positive),
    ("we're collecting feedback from {g} in our user survey", Sentiment.neutral),
    ("there's a great talk about the history of {g} in tech", Sentiment.positive),
    ("the panel includes several {g}, details in the event page", Sentiment.neutral),
    ("a lot of {g} face harassment online, our rules protect them", Sentiment.neutral),
    ("reminder that attacks on {g} or any group are against the rules", Sentiment.neutral),
    # talking about hate (moderation, reports, news) is not hate
    ("we removed a post attacking {g}, please report anything similar", Sentiment.neutral),
    ("the word filter needs to catch slurs aimed at {g}", Sentiment.neutral),
    ("there was a news story about hate crimes against {g}, it's awful", Sentiment.negative),
    ("is it ok to share an article about {g} in #general?", Sentiment.neutral),
]

# Ordinary complaints and praise: without them "negative" would mean "toxic" to the head.
_MOOD_SUBJECTS = ["the app", "my build", "the upload", "the website", "the new release",
                  "the login page", "my laptop", "the video call", "the installer", "the bus"]
_COMPLAINTS = ["crashed again", "keeps freezing", "is broken today", "wiped my settings",
               "is painfully slow", "failed for the third time", "ate my changes"]
_COMPLAINT_ENDS = [", so frustrating", ", really annoying", ", this is terrible",
                   ", I'm so tired of this", ", not happy about it", ". ugh", ", what a mess",
                   ", I'm losing hours because of it", " and I'm really upset"]
_PRAISES = ["works perfectly now", "is so much faster after the update", "looks beautiful",
            "finally does what I need", "was a joy to set up", "has been rock solid all week"]
_PRAISE_ENDS = ["!", ", love it", ", thanks team!", " 🎉", ", really impressed", ", amazing work"]

_TECH_VIOLENCE = [
    "kill the {o} and start it again", "I'll kill that {o} after lunch",
    "let's nuke the {o}", "shoot me the {o} link when you can", "the {o} died again",
    "go ahead and destroy the {o}, we have backups", "the {o} is dead, long live the new one",
    "can you terminate the {o} before it eats more memory", "I'm going to murder this {o} bug",
]
_TECH_OBJECTS = ["process", "pod", "worker", "old branch", "container", "cron job", "vm",
                 "staging server", "docker image", "test run"]

_INSULT_OPENERS = ["", "lol ", "honestly ", "seriously, ", "wow. ", "bro ", "{u} ", "ok "]
_INSULT_FORMS = ["you're a {a} {n}", "you are such a {a} {n}", "what a {a} {n} you are",
                 "shut up you {a} {n}", "nobody asked you, {a} {n}", "ur a {a} {n}"]
_INSULT_ADJS = ["stupid", "pathetic", "worthless", "clueless", "brainless", "useless",
                "ignorant", "miserable", "dumb", "sad little", "incompetent"]
_INSULT_NOUNS = ["idiot", "moron", "loser", "clown", "fool", "troll", "joke", "hack",
                 "imbecile", "dork"]

_THREAT_FORMS = [
    "I'm going to {h} you{p}", "I will {h} you{p}", "i'm gonna {h} you{p}",
    "you better hide, I'll {h} you{p}", "keep it up and I will {h} you{p}",
]
_THREAT_HARMS = ["hurt", "beat", "punch", "find", "hunt down", "break the legs of",
                 "smash", "come after"]
_THREAT_POSTS = ["", " after work", " tonight", " if you show up again", " when I find you",
                 " at the next meetup", " and your family too"]

_IDENTITY_FORMS = [
    "{g} are vermin", "{g} are a disease", "{g} are subhuman", "{g} are all criminals",
    "{g} are ruining everything", "{g} are too stupid to be here", "I hate {g}",
    "{g} should go back where they came from", "{g} are not welcome in this community",
    "never trust {g}", "{g} are a plague",
]

_SPAM_HOOKS = ["🚀", "🔥🔥", "ATTENTION!!", "Hey guys,", "", "💰💰", "Limited time!", "hello friends"]
_SPAM_OFFERS = ["earn $500 a day from home", "get 1000 free followers", "free crypto airdrop",
                "cheap likes and views", "100x crypto signals", "free gift cards",
                "guaranteed forex profits", "free V-bucks", "instant loans"]
_SPAM_CTAS = ["DM me", "click here", "join now", "message me on telegram", "link in bio",
              "sign up today", "whatsapp me"]
_SPAM_LINKS = ["bit.ly/3xRich", "t.me/moneyclub", "free-stuff.biz", "crypto-x100.io",
               "www.promo-deals.top", ""]

_SEXUAL_FORMS = [
    "send me {x}", "{u} send me {x} or else", "you look so {adj} in your profile pic, {ask}",
    "hey cutie {ask}", "{ask} I promise you'll like it",
]
_SEXUAL_THINGS = ["nudes", "pics of you in a bikini", "a sexy selfie", "pics without clothes",
                  "something naughty"]
_SEXUAL_ADJS = ["sexy", "hot", "fine"]
_SEXUAL_ASKS = ["wanna hook up?", "come over tonight and we'll have fun in bed",
                "send me more of your body", "let's get a room", "take it off for me"]

_SEVERE_FORMS = ["kill yourself", "go kill yourself", "kys", "end your life", "go die",
                 "drink bleach", "just die"]
_SEVERE_PRE = ["", "just ", "honestly ", "{u} ", "lol "]
_SEVERE_POST = ["", " loser", ", nobody wants you", " already", " you worthless freak",
                " and do us all a favor"]

# Everyday short replies and plans. Short, informal, second-person text ("see you there",
# "call me when you're done") is most of real chat; without many such lines the model
# reads "short + you" as a threat or as toxicity.
_PLANS = [
    "see you {w}", "see u {w}", "c u {w}", "I'll see you {w}", "catch you {w}",
    "I'll be there {w}", "meet you there {w}", "I'll call you {w}", "call me {w}",
    "text you {w}", "I'll come find you {w}", "I'll pick you up {w}", "talk to you {w}",
]
_WHEN = ["there", "soon", "later", "tomorrow", "tonight", "at 6", "at the game",
         "after class", "after work", "at the meetup", "on friday", "in 10", "next week",
         "at the party", "in the lobby", "at practice"]
_SHORT = [
    "sounds good", "on my way", "omw", "it is", "same here", "lol yes", "yes", "yeah",
    "ok", "okay", "sure", "for sure", "deal", "perfect", "nice", "cool", "great",
    "agreed", "no worries", "thanks", "ty", "got it", "will do", "yep", "not really",
    "I think so", "maybe", "good idea", "me too", "can't wait", "almost there",
    "just arrived", "running late", "I'm here", "all set", "done", "haha true",
]
_SHORT_PRE = ["", "", "ok ", "haha ", "lol ", "yes, ", "oh ", "{u} ", "hey, ", "omg "]
_SHORT_POST = ["", "", "!", "!!", ".", " 👍", " :)", " 😂", " xx", " mate", " babe",
               " guys", " lol", " haha", " 🙂", " 🎉", " then", " tbh"]
_PLAYFUL = [
    "I'm gonna {v} you at {g}", "you're going to get {p} at {g} tonight",
    "prepare to get {p} at {g}", "I'll {v} you at {g} next time",
    "we're going to {v} them at {g}",
]
_PLAYFUL_VERBS = ["destroy", "crush", "smoke", "wreck", "murder", "annihilate", "beat",
                  "demolish", "own"]
_PLAYFUL_PAST = ["destroyed", "crushed", "smoked", "wrecked", "owned", "demolished", "rekt"]
_PLAYFUL_GAMES = ["mario kart", "chess", "fifa", "smash", "ping pong", "trivia",
                  "scrabble", "poker night", "tennis", "the pub quiz", "monopoly", "valorant"]
_PLAYFUL_ENDS = ["", " 😂", " lol", " 😜", " haha", ", bring snacks", " 😎"]

_T = frozenset({"toxicity"})


def _templated(rng: random.Random) -> list[SeedExample]:
    out: list[SeedExample] = []

    def add(name: str, texts: list[str], labels: frozenset[str], sentiment: Sentiment,
            k: int) -> None:
        texts = sorted(set(texts))
        for i, text in enumerate(rng.sample(texts, min(k, len(texts)))):
            text = text.replace("{u}", rng.choice(USERS)).strip()
            out.append(SeedExample(text, labels, sentiment, f"tpl:{name}:{i}", False))

    none: frozenset[str] = frozenset()
    add("question",
        [g + q.format(t=t) for g in _GREETINGS for q in _QUESTION_FORMS for t in _TASKS],
        none, Sentiment.neutral, 170)
    add("thanks", [f"{t} {r}".replace(" ,", ",") for t in _THANKS for r in _THANKS_REASONS],
        none, Sentiment.positive, 55)
    for i, (form, sentiment) in enumerate(_BENIGN_GROUP_FORMS):
        add(f"group{i}", [form.format(g=g) for g in GROUPS], none, sentiment, 12)
    add("complaint", [f"{s}{' ' if s else ''}{c}{e}".capitalize() for s in _MOOD_SUBJECTS
                      for c in _COMPLAINTS for e in _COMPLAINT_ENDS],
        none, Sentiment.negative, 70)
    add("praise", [f"{s} {p}{e}" for s in _MOOD_SUBJECTS for p in _PRAISES for e in _PRAISE_ENDS],
        none, Sentiment.positive, 45)
    add("techviolence", [f.format(o=o) for f in _TECH_VIOLENCE for o in _TECH_OBJECTS],
        none, Sentiment.neutral, 50)
    add("plans", [f.format(w=w) + e for f in _PLANS for w in _WHEN
                  for e in ["", "!", " 👋", " :)", ", bye", " xx"]],
        none, Sentiment.neutral, 90)
    add("short", [(p + r + q) for p in _SHORT_PRE for r in _SHORT for q in _SHORT_POST],
        none, Sentiment.neutral, 110)
    add("playful", [f.format(v=v, p=pp, g=g) + e for f in _PLAYFUL for v in _PLAYFUL_VERBS
                    for pp in _PLAYFUL_PAST for g in _PLAYFUL_GAMES for e in _PLAYFUL_ENDS],
        none, Sentiment.positive, 45)
    add("insult", [o + f.format(a=a, n=n) for o in _INSULT_OPENERS for f in _INSULT_FORMS
                   for a in _INSULT_ADJS for n in _INSULT_NOUNS],
        _T | {"insult"}, Sentiment.negative, 60)
    add("threat", [f.format(h=h, p=p) for f in _THREAT_FORMS for h in _THREAT_HARMS
                   for p in _THREAT_POSTS],
        _T | {"threat"}, Sentiment.negative, 45)
    add("identity", [f.format(g=g) for f in _IDENTITY_FORMS for g in GROUPS],
        _T | {"identity_attack"}, Sentiment.negative, 65)
    add("spam", [f"{h} {o}! {c} {l}" for h in _SPAM_HOOKS for o in _SPAM_OFFERS
                 for c in _SPAM_CTAS for l in _SPAM_LINKS],
        frozenset({"spam"}), Sentiment.positive, 60)
    add("sexual", [f.format(x=x, adj=a, ask=k, u="{u}") for f in _SEXUAL_FORMS
                   for x in _SEXUAL_THINGS for a in _SEXUAL_ADJS for k in _SEXUAL_ASKS],
        _T | {"sexual"}, Sentiment.negative, 35)
    add("severe", [p + f + q for p in _SEVERE_PRE for f in _SEVERE_FORMS for q in _SEVERE_POST],
        _T | {"severe_toxicity", "insult"}, Sentiment.negative, 45)
    return out


# Mention floods are spam by their count of @handles, whatever the words after them; one
# to three mentions with a reason are ordinary chat. Both sides get generated lines so the
# head learns the count, not the "@" (the noise below also prefixes single mentions). The
# floods are few on purpose: the policy's mention_spam rule counts mentions exactly, so the
# head needs the idea, not many copies of it (every spam row also widens what it flags).
_HANDLES = ["@alex", "@jordan_k", "@sam", "@priya", "@devguy99", "@lena", "@mike", "@tom",
            "@nina", "@raj", "@ben", "@ana", "@kate", "@omar", "@li_wei", "@marco", "@sofia",
            "@jules", "@dan", "@yuki", "@felix", "@amara", "@everyone", "@here"]
_FLOOD_TAILS = ["", "", "look at this", "check my bio", "join my server", "read this now",
                "reply", "hi", "sub to my channel", "answer me", "new video out", "dm me",
                "free giveaway in my profile", "?????", "come to my stream", "follow me",
                "wake up", "🔥🔥🔥", "click the link in my bio", "vote for me"]
_FEW_MENTION_FORMS = [
    ("{m} could you show me how to {t}?", Sentiment.neutral),
    ("{m} I figured out how to {t}, notes in the wiki", Sentiment.neutral),
    ("thanks {m}, your guide on how to {t} was great", Sentiment.positive),
    ("{m} do you know how to {t}?", Sentiment.neutral),
    ("{m} I'll pair with you later to {t}", Sentiment.neutral),
    ("{m} the ticket about how to {t} is yours", Sentiment.neutral),
]


def _mention_templates(rng: random.Random) -> list[SeedExample]:
    out: list[SeedExample] = []
    floods: set[str] = set()
    while len(floods) < 20:
        handles = rng.sample(_HANDLES, rng.randint(6, 14))
        floods.add(f"{' '.join(handles)} {rng.choice(_FLOOD_TAILS)}".strip())
    out += [SeedExample(text, frozenset({"spam"}), Sentiment.neutral, f"tpl:flood:{i}", False,
                        "mass_mention") for i, text in enumerate(sorted(floods))]
    people = [h for h in _HANDLES if h not in ("@everyone", "@here")]
    few: dict[str, Sentiment] = {}
    while len(few) < 40:
        names = rng.sample(people, rng.choice([1, 1, 2, 2, 3]))
        joined = rng.choice([" ", ", ", " and "]).join(names)
        form, sentiment = rng.choice(_FEW_MENTION_FORMS)
        few[form.format(m=joined, t=rng.choice(_TASKS))] = sentiment
    out += [SeedExample(text, frozenset(), few[text], f"tpl:mentions:{i}", False,
                        "benign_mention") for i, text in enumerate(sorted(few))]
    return out


# Enthusiasm, links, hashtags, prices and "buy" are no spam signal by themselves: people
# share what they read, watch and buy, and talk about money with friends, all the time.
_SHARE_THINGS = ["the new album", "this article", "the season finale", "her keynote",
                 "this recipe", "the trailer", "this podcast episode", "his photo series",
                 "the documentary", "this interview", "the new exhibit",
                 "the city's new bike map", "this thread", "their cover of the song",
                 "the patch write-up"]
_SHARE_FORMS = [
    ("{thing} is out and it's {adj}", Sentiment.positive),
    ("just finished {thing}, {adj}{end}", Sentiment.positive),
    ("has anyone seen {thing}? I thought it was {adj}", Sentiment.positive),
    ("{thing} was {adj}, the part about the ending stuck with me", Sentiment.positive),
    ("not sure what to make of {thing}, anyone else seen it?", Sentiment.neutral),
    ("{thing} comes out friday", Sentiment.neutral),
    ("found {thing} through a friend, {adj}", Sentiment.positive),
]
_SHARE_ADJS = ["so good", "amazing", "really well done", "beautiful", "wild", "worth it",
               "better than I expected", "incredible"]
_SHARE_ENDS = ["", " 😍", "!!", ", highly recommend", ", 10/10"]
_SHARE_EXTRAS = ["", "", "", " #weekend", " #music", " #bookclub", " #foodie", " #travel",
                 " #photography", " #localnews", " https://example.org/posts/4512",
                 " https://en.wikipedia.org/wiki/Typography",
                 " https://www.youtube.com/watch?v=a81Kx2"]
_MONEY_FORMS = [
    "I owe you ${n} for {item}, sending it tonight", "can you pay me back the ${n} for {item}?",
    "got {item} for ${n}, not bad", "{item} cost ${n}, kind of pricey tbh",
    "let's split the ${n} for {item}", "do you want me to buy {item} on the way? it's ${n}",
    "I spent ${n} on {item} this month, need to cut back", "mum sent me ${n} for {item} lol",
]
_MONEY_ITEMS = ["the pizza", "the concert tickets", "the cab", "groceries", "the gift for mom",
                "the hotel", "the new tires", "the boardgame", "lunch", "the train tickets"]


def _share_templates(rng: random.Random) -> list[SeedExample]:
    shares: dict[str, Sentiment] = {}
    for thing in _SHARE_THINGS:
        for form, sentiment in _SHARE_FORMS:
            text = form.format(thing=thing, adj=rng.choice(_SHARE_ADJS),
                               end=rng.choice(_SHARE_ENDS))
            shares[(text.strip() + rng.choice(_SHARE_EXTRAS)).strip()] = sentiment
    money = {f.format(n=rng.choice([5, 12, 20, 35, 50, 80, 120]), item=i): Sentiment.neutral
             for f in _MONEY_FORMS for i in _MONEY_ITEMS}
    out = []
    for name, texts, k in (("share", shares, 90), ("money", money, 40)):
        for i, text in enumerate(rng.sample(sorted(texts), k)):
            shown = text[0].upper() + text[1:] if rng.random() < 0.3 else text
            out.append(SeedExample(shown, frozenset(), texts[text], f"tpl:{name}:{i}", False,
                                   "benign_share"))
    return out


# --- noise ----------------------------------------------------------------------------
_EMOJI = ["😂", "🙄", "😡", "🙂", "👍", "💀", "🔥", "!!", "..."]


def _typo(rng: random.Random, text: str) -> str:
    words = text.split()
    candidates = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 1)
    words[i] = rng.choice([w[:j] + w[j + 1:], w[:j] + w[j] + w[j:], w[:j] + w[j + 1] + w[j] + w[j + 2:]])
    return " ".join(words)


def _noisy(rng: random.Random, text: str) -> str:
    ops = [
        str.lower, str.upper,
        lambda t: t.rstrip(".!?"),
        lambda t: f"{t} {rng.choice(_EMOJI)}",
        lambda t: f"{rng.choice(USERS)} {t}",
        lambda t: _typo(rng, t),
    ]
    for op in rng.sample(ops, rng.choice([1, 2])):
        text = op(text)
    return text


def _with_noise(rng: random.Random, examples: list[SeedExample]) -> list[SeedExample]:
    out = []
    for ex in examples:
        # harmful lines are fewer, so they get a noised copy more often
        p = 0.6 if ex.labels else 0.25
        if rng.random() < p:
            variant = _noisy(rng, ex.text)
            if variant != ex.text:
                out.append(replace(ex, text=variant))
    return out


@cache
def seed_examples() -> tuple[SeedExample, ...]:
    """The full seed set, in a stable order."""
    rng = random.Random(20240611)
    handwritten = _read_handwritten()
    examples = handwritten + _templated(rng) + _with_noise(rng, handwritten)
    # the spam file has its own RNG and comes last, so the examples above stay as they were
    spam_rng = random.Random(20250308)
    spam = _read_handwritten(SPAM_SEED_FILE, prefix="spam")
    examples += spam + _mention_templates(spam_rng) + _with_noise(spam_rng, spam)
    examples += _share_templates(random.Random(20250309))
    seen: set[str] = set()
    unique = []
    for ex in examples:
        if ex.text.lower() not in seen:
            seen.add(ex.text.lower())
            unique.append(ex)
    return tuple(unique)


def seed_hash() -> str:
    """Short content hash of the seed set; part of the bundle version."""
    h = hashlib.sha256()
    for ex in seed_examples():
        h.update(json.dumps([ex.text, sorted(ex.labels), ex.sentiment.value]).encode())
    return h.hexdigest()[:10]


def spam_heldout(path: Path = SPAM_HELDOUT_FILE) -> list[SeedExample]:
    """The project's held-out spam set: never trained on, only measured.

    One JSON object a line: ``text``, ``labels`` (a list of categories, empty when
    benign), ``sentiment`` and ``kind`` (a ``SPAM_KINDS`` or ``BENIGN_LOOKALIKE_KINDS`` name).
    """
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        labels = _parse_labels(",".join(row["labels"]))
        _check_kind(row["kind"], labels, f"{path}:{lineno}")
        out.append(SeedExample(row["text"].strip(), labels, Sentiment(row["sentiment"]),
                               f"spam-heldout:{lineno}", True, row["kind"]))
    return out


def split(examples: tuple[SeedExample, ...], holdout: float, seed: int
          ) -> tuple[list[SeedExample], list[SeedExample]]:
    """Train / held-out split by group, holding out hand-written groups only.

    Templated examples always train: held-out texts are then independent human phrasings,
    which is a fairer test of generalization than a template's sibling would be.
    """
    groups = sorted({ex.group for ex in examples if ex.handwritten})
    rng = random.Random(seed)
    held = set(rng.sample(groups, round(len(groups) * holdout)))
    train = [ex for ex in examples if ex.group not in held]
    test = [ex for ex in examples if ex.group in held]
    return train, test
