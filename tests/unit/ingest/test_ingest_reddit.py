"""Reddit listing items -> MemberActivity, the cursor arithmetic, and the API client's
token, rate-limit and retry handling (against httpx's in-process mock transport)."""

import copy
from datetime import UTC, datetime

import httpx
import pytest

from schemas import ActivityKind, MemberActivity, Platform
from services.ingest.reddit import (
    RedditSettings,
    event_id_for,
    to_activities,
    to_activity,
)
from services.ingest.reddit.client import RedditApiError, RedditAuthError, RedditClient
from services.ingest.reddit.cursor import RECENT_MAX, Cursor

POST = {
    "kind": "t3",
    "data": {
        "approved_at_utc": None, "subreddit": "Python", "selftext": "I keep getting\n`RuntimeError: no running event loop` &amp; more",
        "author_fullname": "t2_8xk2q", "saved": False, "gilded": 0, "clicked": False,
        "title": "How do I use asyncio with threads?", "link_flair_text": "Help",
        "subreddit_name_prefixed": "r/Python", "hidden": False, "pwls": 6, "downs": 0,
        "name": "t3_1hq9z7x", "upvote_ratio": 0.92, "ups": 14, "score": 14, "is_self": True,
        "domain": "self.Python", "edited": False, "over_18": False, "distinguished": None,
        "created_utc": 1735732800.0, "id": "1hq9z7x", "subreddit_id": "t5_2qh0y",
        "author": "async_alice", "num_comments": 3, "stickied": False,
        "permalink": "/r/Python/comments/1hq9z7x/how_do_i_use_asyncio_with_threads/",
        "url": "https://www.reddit.com/r/Python/comments/1hq9z7x/how_do_i_use_asyncio_with_threads/",
    },
}
LINK_POST = {
    "kind": "t3",
    "data": {
        "subreddit": "Python", "selftext": "", "author_fullname": "t2_1bc", "title": "Python 3.14 released",
        "name": "t3_1hqa001", "score": 230, "is_self": False, "created_utc": 1735736400.0,
        "id": "1hqa001", "subreddit_id": "t5_2qh0y", "author": "release_bot", "num_comments": 41,
        "permalink": "/r/Python/comments/1hqa001/python_314_released/",
        "url": "https://www.python.org/downloads/release/python-3140/", "link_flair_text": None,
    },
}
COMMENT = {
    "kind": "t1",
    "data": {
        "subreddit_id": "t5_2qh0y", "link_title": "How do I use asyncio with threads?",
        "subreddit": "Python", "link_author": "async_alice", "author_fullname": "t2_44rr", "id": "m4x2k1p",
        "author": "thread_tom", "parent_id": "t3_1hq9z7x", "link_id": "t3_1hq9z7x",
        "body": "Use `asyncio.run_coroutine_threadsafe`.", "score": 5, "is_submitter": False,
        "name": "t1_m4x2k1p", "created_utc": 1735733100.0, "author_flair_text": None, "edited": False,
        "permalink": "/r/Python/comments/1hq9z7x/how_do_i_use_asyncio_with_threads/m4x2k1p/",
        "link_permalink": "https://www.reddit.com/r/Python/comments/1hq9z7x/how_do_i_use_asyncio_with_threads/",
        "distinguished": None, "stickied": False,
    },
}
NESTED_REPLY = copy.deepcopy(COMMENT)
NESTED_REPLY["data"].update(id="m4x3aa0", name="t1_m4x3aa0", parent_id="t1_m4x2k1p", author="async_alice",
                            author_fullname="t2_8xk2q", body="Thanks, that works?", is_submitter=True,
                            created_utc=1735733400.5,
                            permalink="/r/Python/comments/1hq9z7x/how_do_i_use_asyncio_with_threads/m4x3aa0/")
DELETED = copy.deepcopy(COMMENT)
DELETED["data"].update(id="m4x9zz9", name="t1_m4x9zz9", author="[deleted]", body="[deleted]",
                       author_fullname=None)


def listing(*items, after=None):
    return {"kind": "Listing", "data": {"after": after, "dist": len(items), "modhash": "",
                                        "geo_filter": None, "children": list(items), "before": None}}


def test_post_maps_to_message_posted():
    event = to_activity(POST)
    assert isinstance(event, MemberActivity)
    assert event.event_id == "reddit:t3_1hq9z7x:posted"
    assert event.platform is Platform.reddit
    assert event.kind is ActivityKind.message_posted
    assert (event.community_id, event.channel_id, event.member_id) == ("r/python", "Python", "async_alice")
    assert event.message_id == "t3_1hq9z7x" and event.reply_to is None
    assert event.text == ("How do I use asyncio with threads?\n\n"
                          "I keep getting\n`RuntimeError: no running event loop` &amp; more")
    assert event.occurred_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert event.permalink == "https://www.reddit.com/r/Python/comments/1hq9z7x/how_do_i_use_asyncio_with_threads/"
    assert event.attributes["author_fullname"] == "t2_8xk2q"
    assert event.attributes["score"] == 14 and event.attributes["link_flair_text"] == "Help"
    assert "url" not in event.attributes  # a self post's url is its permalink
    MemberActivity.model_validate_json(event.to_bytes())  # round-trips the contract


def test_link_post_text_is_the_title_and_url_is_kept():
    event = to_activity(LINK_POST)
    assert event.text == "Python 3.14 released"
    assert event.attributes["url"] == "https://www.python.org/downloads/release/python-3140/"
    assert "link_flair_text" not in event.attributes  # None values are not kept


def test_comment_replies_to_its_parent():
    top, nested = to_activity(COMMENT), to_activity(NESTED_REPLY)
    assert top.reply_to == "t3_1hq9z7x" and top.message_id == "t1_m4x2k1p"
    assert nested.reply_to == "t1_m4x2k1p"
    assert top.text == "Use `asyncio.run_coroutine_threadsafe`."
    assert top.event_id == "reddit:t1_m4x2k1p:posted"
    assert top.attributes["link_id"] == "t3_1hq9z7x"
    assert nested.occurred_at == datetime(2025, 1, 1, 12, 10, 0, 500000, tzinfo=UTC)
    assert nested.permalink.startswith("https://www.reddit.com/r/Python/comments/1hq9z7x/")


def test_deleted_authors_and_other_kinds_are_skipped():
    more = {"kind": "more", "data": {"count": 3, "name": "t1__", "id": "_", "children": ["abc"]}}
    subreddit = {"kind": "t5", "data": {"display_name": "Python", "name": "t5_2qh0y"}}
    events = to_activities(listing(NESTED_REPLY, DELETED, more, subreddit, COMMENT, POST))
    assert [e.message_id for e in events] == ["t1_m4x3aa0", "t1_m4x2k1p", "t3_1hq9z7x"]
    assert to_activity(DELETED) is None


def test_removed_text_is_not_passed_on_as_text():
    removed = copy.deepcopy(COMMENT)
    removed["data"]["body"] = "[removed]"
    event = to_activity(removed)
    assert event is not None and event.text is None and event.message_id == "t1_m4x2k1p"


def test_event_id_is_stable_across_sightings():
    later = copy.deepcopy(COMMENT)
    later["data"].update(score=99, body="edited body", edited=1735740000.0)
    first, again = to_activity(COMMENT), to_activity(later)
    assert first.event_id == again.event_id == event_id_for("t1_m4x2k1p")
    # A fullname built from kind + id when "name" is missing gives the same key.
    no_name = copy.deepcopy(POST)
    del no_name["data"]["name"]
    assert to_activity(no_name).event_id == to_activity(POST).event_id


def test_cursor_keeps_equal_timestamps_and_stays_bounded():
    cursor = Cursor(None, 0.0).advance([("t3_a", 10.0), ("t3_b", 20.0), ("t3_c", 20.0)])
    assert (cursor.newest, cursor.newest_created_utc) == ("t3_c", 20.0)
    assert cursor.recent_ids == {"t3_b", "t3_c"}
    wide = cursor.advance([("t3_d", 25.0)], lookback_s=10)
    assert wide.recent_ids == {"t3_b", "t3_c", "t3_d"}
    many = Cursor(None, 0.0).advance([(f"t1_{i}", 5.0) for i in range(RECENT_MAX + 50)])
    assert len(many.recent) == RECENT_MAX


def test_settings_read_subreddits_from_the_environment(monkeypatch):
    monkeypatch.setenv("STEWARD_REDDIT_SUBREDDITS", "r/Python, /r/rust/ ,learnpython")
    monkeypatch.setenv("STEWARD_REDDIT_CLIENT_SECRET", "s3cret")
    settings = RedditSettings()
    assert settings.reddit_subreddits == ["Python", "rust", "learnpython"]
    assert "s3cret" not in repr(settings)
    assert not settings.uses_password_grant


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(handler, **overrides):
    settings = RedditSettings(reddit_client_id="cid", reddit_client_secret="secret",
                              reddit_api_url="https://api.test", reddit_token_url="https://www.test/token",
                              reddit_backoff_initial_s=0.5, reddit_max_attempts=3, **overrides)
    clock = FakeClock()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RedditClient(settings, http=http, sleep=clock.sleep, clock=clock), clock


async def test_client_refreshes_the_token_before_expiry_and_honours_rate_limits():
    tokens, seen_auth = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            assert request.headers["authorization"] == httpx.BasicAuth("cid", "secret")._auth_header
            assert b"grant_type=client_credentials" in request.content
            tokens.append(f"tok{len(tokens)}")
            return httpx.Response(200, json={"access_token": tokens[-1], "token_type": "bearer",
                                             "expires_in": 3600, "scope": "*"})
        seen_auth.append(request.headers["authorization"])
        assert request.headers["user-agent"].startswith("python:steward")
        return httpx.Response(200, json=listing(), headers={"X-Ratelimit-Remaining": "0",
                                                            "X-Ratelimit-Reset": "42", "X-Ratelimit-Used": "100"})

    client, clock = make_client(handler)
    await client.listing("Python", "new")
    await client.listing("Python", "new")  # the window is spent: waits for its reset first
    assert clock.sleeps == [42]
    clock.now += 3600 - 61  # just within the refresh margin
    await client.listing("Python", "new")
    assert seen_auth == ["bearer tok0", "bearer tok0", "bearer tok1"]


async def test_client_retries_429_and_5xx_then_gives_up():
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(502),
                    httpx.Response(200, json=listing(POST))])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86400})
        return next(answers)

    client, clock = make_client(handler)
    page = await client.listing("Python", "new", after="t3_x")
    assert page["data"]["children"][0]["data"]["name"] == "t3_1hq9z7x"
    assert clock.sleeps[0] == 7 and 0.5 <= clock.sleeps[1] <= 1.0  # 2nd try: 0.5 * 2, jittered

    failing, clock = make_client(lambda r: httpx.Response(200, json={"access_token": "t"})
                                 if r.url.path == "/token" else httpx.Response(503))
    with pytest.raises(RedditApiError, match="503 after 3 tries"):
        await failing.listing("Python", "new")


async def test_client_refuses_bad_credentials_without_leaking_them():
    client, _ = make_client(lambda r: httpx.Response(401, json={"message": "Unauthorized"}),
                            reddit_username="bob", reddit_password="hunter2")
    with pytest.raises(RedditAuthError) as caught:
        await client.listing("Python", "new")
    assert "hunter2" not in str(caught.value) and "secret" not in str(caught.value)
