"""A deterministic week of a 50-member community, written for the demo and the tests.

Most of it is ordinary: joins, questions and answers in threads, reactions. A handful of
messages are harmful (a threat, insults, hate, spam) so that the demo raises incidents.
"""

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

COMMUNITY_ID = "demo-community"
CHANNELS = ("general", "help", "events", "random")

QUESTIONS = (
    "Has anyone tried the new release yet?",
    "How do I reset my password on the forum?",
    "Is the meetup on Thursday still happening?",
    "Which plugin do you use for code formatting?",
    "Can someone review my first pull request?",
    "Where can I find the slides from last week's talk?",
    "Does the API support pagination?",
    "What's the best way to get started contributing?",
)
ANSWERS = (
    "Yes, it works great for me so far.",
    "Check the settings page, there is a reset link at the bottom.",
    "It is, see you there!",
    "I use the default formatter, no complaints.",
    "Sure, send me the link and I'll take a look tonight.",
    "They are pinned in the events channel.",
    "It does, look at the cursor parameter in the docs.",
    "Pick an issue labelled good-first-issue and say hi in the thread.",
)
CHATTER = (
    "Good morning everyone!",
    "Thanks for the help yesterday, it fixed my build.",
    "Just shipped my first feature with this, really happy with it.",
    "The workshop recording is up now.",
    "Welcome to all the new folks this week!",
    "I wrote a short guide about deploying this on a small server.",
    "Coffee break, anyone else watching the conference stream?",
    "Great discussion in the help channel today.",
)
HARMFUL = (
    ("general", "You are a worthless idiot and everyone here laughs at you."),
    ("help", "Post that again and I will find where you live and hurt you."),
    ("random", "People like them are vermin and should be thrown out of this country."),
    ("general", "BUY CHEAP FOLLOWERS NOW!!! Best crypto deals, DM me, click http://spam.example/win"),
    ("events", "Shut up, you pathetic moron, nobody wants you here."),
)


@dataclass(frozen=True)
class DemoWeek:
    events: list[dict]
    first_day: date
    last_day: date
    harmful_texts: tuple[str, ...]


def demo_week(last_day: date | None = None, *, members: int = 50, seed: int = 7) -> DemoWeek:
    rng = random.Random(seed)
    last_day = last_day or datetime.now(UTC).date() - timedelta(days=1)  # a whole week, all past
    first_day = last_day - timedelta(days=6)
    people = [f"member-{n:02d}" for n in range(1, members + 1)]
    events: list[dict] = []

    def at(day: date, hour: int, minute: int) -> str:
        return datetime.combine(day, time(hour, minute), UTC).isoformat()

    def add(kind: str, member: str, when: str, channel: str, **extra) -> str:
        event_id = f"demo:{len(events):05d}"
        events.append(
            {"event_id": event_id, "platform": "generic", "community_id": COMMUNITY_ID,
             "channel_id": channel, "member_id": member, "kind": kind, "occurred_at": when, **extra}
        )
        return event_id

    def message(member: str, when: str, channel: str, text: str, reply_to: str | None = None) -> str:
        message_id = f"msg-{len(events):05d}"
        add("message_posted", member, when, channel, message_id=message_id, text=text, reply_to=reply_to)
        return message_id

    for index, member in enumerate(people):
        add("member_joined", member, at(first_day + timedelta(days=index % 7), 8, index % 60), "general")

    for offset in range(7):
        day = first_day + timedelta(days=offset)
        joined = [p for i, p in enumerate(people) if i % 7 <= offset]
        for hour in range(9, 21):
            asker = rng.choice(joined)
            channel = rng.choice(CHANNELS)
            question = message(asker, at(day, hour, 5), channel, rng.choice(QUESTIONS))
            for minute in (15, 40)[: rng.randint(0, 2)]:
                answerer = rng.choice([p for p in joined if p != asker])
                message(answerer, at(day, hour, minute), channel, rng.choice(ANSWERS), reply_to=question)
            fan = rng.choice(joined)
            add("reaction_added", fan, at(day, hour, 50), channel, message_id=question,
                attributes={"reaction": "thumbsup"})
            message(rng.choice(joined), at(day, hour, 55), rng.choice(CHANNELS), rng.choice(CHATTER))

    for index, (channel, text) in enumerate(HARMFUL):
        day = first_day + timedelta(days=1 + index)
        message(people[-1 - index], at(day, 22, 10 + index), channel, text)

    add("member_left", people[-1], at(last_day, 23, 0), "general")
    return DemoWeek(events, first_day, last_day, tuple(text for _, text in HARMFUL))
