"""The Reddit poller against a real HTTP server speaking Reddit's OAuth API (token endpoint,
``/r/{sub}/new`` and ``/r/{sub}/comments`` listings with ``after``/``limit`` paging, rate-limit
headers, a 429, bearer tokens) and the real local Kafka (tansu) and MongoDB (nx-27017)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import MemberActivity, topics
from services.ingest.publish import ActivityPublisher, BrokerUnavailable
from services.ingest.reddit import RedditClient, RedditPoller, RedditSettings
from services.runtime.broker import ensure_topics
from services.runtime.mongo import database, make_mongo
from tests.support import read_all

pytestmark = pytest.mark.integration

CLIENT_ID, SECRET, USER_AGENT = "steward-test-app", "s3cret-value", "python:steward-test:0.1 (by /u/tester)"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeReddit:
    """The relevant part of Reddit's API, in memory, served by http.server in a thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[tuple[str, str], list[dict]] = {}  # (sub lower, "new"|"comments") -> newest first
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.api_requests: list[tuple[str, dict]] = []
        self.limits_seen: set[int] = set()
        self.pending_429 = 0
        self.ratelimit_remaining = 600
        self.serial = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeReddit:  # noqa: PYI034
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- content -------------------------------------------------------------------------

    def post(self, sub: str, author: str, title: str, created: float, body: str = "") -> str:
        with self.lock:
            self.serial += 1
            pid = f"p{self.serial:05d}"
            data = {"subreddit": sub, "subreddit_id": "t5_test", "id": pid, "name": f"t3_{pid}",
                    "author": author, "author_fullname": f"t2_{author[:6]}" if author != "[deleted]" else None,
                    "title": title, "selftext": body, "is_self": True, "score": 1, "num_comments": 0,
                    "created_utc": created, "link_flair_text": None, "over_18": False,
                    "permalink": f"/r/{sub}/comments/{pid}/{title.lower().replace(' ', '_')[:20]}/",
                    "url": f"https://www.reddit.com/r/{sub}/comments/{pid}/"}
            self._insert(sub, "new", {"kind": "t3", "data": data})
            return f"t3_{pid}"

    def comment(self, sub: str, author: str, body: str, created: float, parent: str, link: str) -> str:
        with self.lock:
            self.serial += 1
            cid = f"c{self.serial:05d}"
            data = {"subreddit": sub, "subreddit_id": "t5_test", "id": cid, "name": f"t1_{cid}",
                    "author": author, "author_fullname": f"t2_{author[:6]}", "body": body,
                    "parent_id": parent, "link_id": link, "score": 1, "created_utc": created,
                    "permalink": f"/r/{sub}/comments/{link[3:]}/x/{cid}/", "is_submitter": False}
            self._insert(sub, "comments", {"kind": "t1", "data": data})
            return f"t1_{cid}"

    def _insert(self, sub: str, endpoint: str, child: dict) -> None:
        listing = self.items.setdefault((sub.lower(), endpoint), [])
        listing.append(child)
        # Newest first; among equal timestamps the later insert is newer.
        listing.sort(key=lambda c: c["data"]["created_utc"], reverse=True)

    # -- HTTP ----------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def _send(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
                raw = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if urlsplit(self.path).path != "/api/v1/access_token":
                    return self._send(404, {"message": "Not Found", "error": 404})
                expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._send(401, {"message": "Unauthorized", "error": 401})
                if form.get("grant_type") != ["client_credentials"]:
                    return self._send(200, {"error": "unsupported_grant_type"})
                if self.headers.get("User-Agent") != USER_AGENT:
                    return self._send(429, {"message": "Too Many Requests", "error": 429})
                with fake.lock:
                    fake.token_requests += 1
                    token = f"token-{fake.token_requests}"
                    fake.tokens.add(token)
                return self._send(200, {"access_token": token, "token_type": "bearer",
                                        "expires_in": 86400, "scope": "*"})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                auth = self.headers.get("Authorization", "")
                with fake.lock:
                    if not auth.lower().startswith("bearer ") or auth[7:] not in fake.tokens:
                        return self._send(401, {"message": "Unauthorized", "error": 401},
                                          {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'})
                    fake.api_requests.append((url.path, params))
                    if fake.pending_429:
                        fake.pending_429 -= 1
                        return self._send(429, {"message": "Too Many Requests", "error": 429},
                                          {"Retry-After": "3", "X-Ratelimit-Remaining": "0",
                                           "X-Ratelimit-Reset": "3", "X-Ratelimit-Used": "600"})
                    fake.ratelimit_remaining -= 1
                    remaining = fake.ratelimit_remaining
                    if remaining <= 0:
                        fake.ratelimit_remaining = 600  # the client waits the reset; the window renews
                    parts = url.path.strip("/").split("/")
                    if len(parts) != 3 or parts[0] != "r" or parts[2] not in ("new", "comments"):
                        return self._send(404, {"message": "Not Found", "error": 404})
                    limit = int(params.get("limit", 25))
                    fake.limits_seen.add(limit)
                    listing = list(fake.items.get((parts[1].lower(), parts[2]), []))
                start = 0
                if "after" in params:
                    names = [c["data"]["name"] for c in listing]
                    start = names.index(params["after"]) + 1 if params["after"] in names else len(listing)
                page = listing[start:start + min(limit, 100)]
                after = page[-1]["data"]["name"] if page and start + len(page) < len(listing) else None
                return self._send(
                    200,
                    {"kind": "Listing", "data": {"after": after, "before": None, "dist": len(page),
                                                 "modhash": None, "geo_filter": "", "children": page}},
                    {"X-Ratelimit-Remaining": f"{max(remaining, 0)}.0", "X-Ratelimit-Used": str(600 - remaining),
                     "X-Ratelimit-Reset": "5"},
                )

        return Handler


@pytest.fixture
def fake_reddit():
    with FakeReddit() as fake:
        yield fake


class Sleeps:
    """Records the client's waits instead of sleeping them: the test stays fast."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Recorder:
    """The publish callable: records what the poller hands over, then publishes for real."""

    def __init__(self, publish) -> None:
        self.inner = publish
        self.batches: list[list[MemberActivity]] = []
        self.fail = False

    async def __call__(self, events: list[MemberActivity]) -> None:
        if self.fail:
            raise BrokerUnavailable("injected: broker did not acknowledge")
        await self.inner(events)
        self.batches.append(events)

    @property
    def events(self) -> list[MemberActivity]:
        return [e for batch in self.batches for e in batch]

    def take(self) -> list[MemberActivity]:
        events = self.events
        self.batches.clear()
        return events


async def topic_events(bootstrap: str, community: str) -> list[MemberActivity]:
    """Every MemberActivity of ``community`` now on the (shared) topic."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        partitions = [TopicPartition(topics.ACTIVITY, p) for p in probe.partitions_for_topic(topics.ACTIVITY)]
        ends, starts = await probe.end_offsets(partitions), await probe.beginning_offsets(partitions)
        total = sum(ends[p] - starts[p] for p in partitions)
    finally:
        await probe.stop()
    records = await read_all(bootstrap, topics.ACTIVITY, expected=total, timeout_s=20)
    assert len(records) >= total
    events = [MemberActivity.model_validate_json(r.value) for r in records]
    return [e for e in events if e.community_id == community]


def settings_for(fake: FakeReddit, local_stack, unique: str, sub: str, **overrides) -> RedditSettings:
    values = {
        "kafka_bootstrap": local_stack.endpoints.kafka, "mongo_uri": local_stack.endpoints.mongo_uri,
        "mongo_db": f"reddit_{unique}", "reddit_client_id": CLIENT_ID, "reddit_client_secret": SECRET,
        "reddit_user_agent": USER_AGENT, "reddit_subreddits": [f"r/{sub}"],
        "reddit_api_url": fake.url, "reddit_token_url": f"{fake.url}/api/v1/access_token",
        "reddit_page_limit": 2, "reddit_backoff_initial_s": 0.01, "publish_timeout_s": 10,
    }
    values.update(overrides)
    return RedditSettings(**values)


async def test_poller_publishes_new_items_oldest_first_and_resumes_from_its_cursor(
    fake_reddit, local_stack, unique
):
    sub = f"StewardTest{unique}"
    community = f"r/{sub.lower()}"
    bootstrap = local_stack.endpoints.kafka
    await ensure_topics(bootstrap)
    settings = settings_for(fake_reddit, local_stack, unique, sub)

    publisher = ActivityPublisher(settings, settings.publish_timeout_s)
    publish = Recorder(publisher.publish)
    mongo = make_mongo(settings)
    db = database(mongo, settings)
    cursors = db[settings.reddit_cursor_collection]
    await publisher.start()
    try:
        # History before the first run is not backfilled.
        old_post = fake_reddit.post(sub, "old_timer", "An old post", T0)
        fake_reddit.comment(sub, "old_timer", "an old comment", T0 + 5, old_post, old_post)
        sleeps = Sleeps()
        async with RedditClient(settings, sleep=sleeps) as client:
            poller = RedditPoller(settings, client=client, db=db, publish=publish)
            first = await poller.poll_once()
            assert [(r.kind, r.first_run, r.published, r.error) for r in first] == [
                ("posts", True, 0, None), ("comments", True, 0, None)]
            posts_cursor = await cursors.find_one({"_id": f"{sub.lower()}:posts"})
            assert (posts_cursor["newest"], posts_cursor["newest_created_utc"]) == (old_post, T0)
            assert posts_cursor["subreddit"] == sub

            # New items: one created in the same second as the cursor, one by a deleted
            # account, a reply to a comment; more than one page each (limit=2).
            same_second = fake_reddit.post(sub, "alice", "Same second as the cursor", T0)
            p1 = fake_reddit.post(sub, "bob", "Is asyncio worth it?", T0 + 60, body="Asking for a friend")
            fake_reddit.post(sub, "[deleted]", "gone", T0 + 70)
            p2 = fake_reddit.post(sub, "carol", "Show r/python: steward", T0 + 80)
            p3 = fake_reddit.post(sub, "bob", "Follow-up", T0 + 90)
            c1 = fake_reddit.comment(sub, "carol", "Yes!", T0 + 65, p1, p1)
            c2 = fake_reddit.comment(sub, "bob", "Why?", T0 + 66, c1, p1)
            c3 = fake_reddit.comment(sub, "alice", "nice", T0 + 85, p2, p2)
            fake_reddit.pending_429 = 1
            fake_reddit.ratelimit_remaining = 4  # runs out during this cycle: a wait of its reset

            second = await poller.poll_once()
            assert [(r.kind, r.new, r.published, r.skipped, r.error) for r in second] == [
                ("posts", 5, 4, 1, None), ("comments", 3, 3, 0, None)]
            handed = publish.take()
            assert [e.message_id for e in handed] == [same_second, p1, p2, p3, c1, c2, c3]  # oldest first
            # The 429's Retry-After, then the window's reset once X-Ratelimit-Remaining hit 0.
            assert len(sleeps.calls) == 2 and sleeps.calls[0] == 3
            assert sleeps.calls[1] == pytest.approx(5, abs=0.5)
            assert fake_reddit.limits_seen == {2}
            assert any("after" in params for _, params in fake_reddit.api_requests)

            on_topic = await topic_events(bootstrap, community)
            assert sorted(e.event_id for e in on_topic) == sorted(e.event_id for e in handed)
            by_id = {e.message_id: e for e in on_topic}
            assert by_id[c2].reply_to == c1 and by_id[c1].reply_to == p1
            assert by_id[p1].text == "Is asyncio worth it?\n\nAsking for a friend"
            assert by_id[p1].member_id == "bob" and by_id[p1].channel_id == sub
            assert by_id[p1].permalink.startswith(f"https://www.reddit.com/r/{sub}/comments/")
            posts_cursor = await cursors.find_one({"_id": f"{sub.lower()}:posts"})
            assert (posts_cursor["newest"], posts_cursor["newest_created_utc"]) == (p3, T0 + 90)
            comments_cursor = await cursors.find_one({"_id": f"{sub.lower()}:comments"})
            assert comments_cursor["newest"] == c3

            # Nothing new: nothing published.
            assert [r.new for r in await poller.poll_once()] == [0, 0]
            assert publish.take() == []

        # A restart: a new client (new token) and a new poller over the same MongoDB.
        tokens_before = fake_reddit.token_requests
        async with RedditClient(settings, sleep=Sleeps()) as client:
            poller = RedditPoller(settings, client=client, db=db, publish=publish)
            assert [(r.new, r.published, r.first_run) for r in await poller.poll_once()] == [
                (0, 0, False), (0, 0, False)]
            assert fake_reddit.token_requests == tokens_before + 1

            # Reddit revokes the token: the client fetches a new one and goes on.
            fake_reddit.tokens.clear()
            p4 = fake_reddit.post(sub, "dave", "After the restart", T0 + 120)
            p5 = fake_reddit.post(sub, "erin", "Another one", T0 + 130)

            # The broker does not acknowledge: the cursor stays where it was.
            publish.fail = True
            failed = await poller.poll_once()
            assert "BrokerUnavailable" in failed[0].error and failed[0].published == 0
            assert (await cursors.find_one({"_id": f"{sub.lower()}:posts"}))["newest"] == p3
            assert fake_reddit.token_requests == tokens_before + 2

            # The next cycle publishes them, oldest first, and moves the cursor.
            publish.fail = False
            again = await poller.poll_once()
            assert [(r.kind, r.published, r.error) for r in again] == [("posts", 2, None), ("comments", 0, None)]
            assert [e.message_id for e in publish.take()] == [p4, p5]
            assert (await cursors.find_one({"_id": f"{sub.lower()}:posts"}))["newest"] == p5

        on_topic = await topic_events(bootstrap, community)
        assert len(on_topic) == 9 and len({e.event_id for e in on_topic}) == 9
    finally:
        await publisher.stop()
        await mongo.close()


async def test_backfill_publishes_that_many_on_the_first_run(fake_reddit, local_stack, unique):
    sub = f"Backfill{unique}"
    await ensure_topics(local_stack.endpoints.kafka)
    settings = settings_for(fake_reddit, local_stack, unique, sub, reddit_backfill=3)
    names = [fake_reddit.post(sub, f"user{i}", f"post {i}", T0 + i) for i in range(5)]
    published: list[MemberActivity] = []

    async def collect(events: list[MemberActivity]) -> None:
        published.extend(events)

    mongo = make_mongo(settings)
    try:
        async with RedditClient(settings, sleep=Sleeps()) as client:
            poller = RedditPoller(settings, client=client, db=database(mongo, settings), publish=collect)
            await poller.poll_stream(sub, "posts")
            assert [e.message_id for e in published] == names[2:]  # the 3 newest, oldest first
            assert (await poller.poll_stream(sub, "posts")).new == 0
    finally:
        await mongo.close()
