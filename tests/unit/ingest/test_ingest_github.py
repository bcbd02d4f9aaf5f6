"""GitHub adapter: webhook payloads in the shape GitHub's webhook docs show."""

import json

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from schemas import ActivityKind
from services.ingest.app import create_service
from services.ingest.connections import Connection, Connections
from services.ingest.platforms import Delivery, MalformedPayload
from services.ingest.platforms.github import normalize, sign, verify
from services.ingest.signatures import SignatureError
from services.runtime.settings import IngestSettings

SECRET = "gh-hook-secret"
GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
OCTOCAT = {"login": "octocat", "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": False,
           "html_url": "https://github.com/octocat"}
HUBOT = {"login": "hubot", "id": 2, "node_id": "MDQ6VXNlcjI=", "type": "User", "site_admin": False}
REPOSITORY = {"id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": "Hello-World",
              "full_name": "octo-org/Hello-World", "private": False,
              "owner": {"login": "octo-org", "id": 6811672, "type": "Organization"},
              "html_url": "https://github.com/octo-org/Hello-World"}
ORGANIZATION = {"login": "octo-org", "id": 6811672, "node_id": "MDEyOk9yZ2FuaXphdGlvbjY4MTE2NzI="}


def issue(**overrides) -> dict:
    fields = {"url": "https://api.github.com/repos/octo-org/Hello-World/issues/1347", "id": 1, "node_id": "MDU6SXNzdWUx",
              "number": 1347, "title": "Found a bug", "user": OCTOCAT, "labels": [], "state": "open", "locked": False,
              "comments": 0, "created_at": "2025-03-01T12:00:00Z", "updated_at": "2025-03-01T12:00:00Z",
              "closed_at": None, "author_association": "MEMBER", "body": "I'm having a problem with this.",
              "html_url": "https://github.com/octo-org/Hello-World/issues/1347"}
    fields.update(overrides)
    return fields


def issue_comment(**overrides) -> dict:
    fields = {"url": "https://api.github.com/repos/octo-org/Hello-World/issues/comments/1146825", "id": 1146825,
              "node_id": "IC_kwDOABCD", "user": HUBOT, "created_at": "2025-03-01T12:10:00Z",
              "updated_at": "2025-03-01T12:10:00Z", "author_association": "CONTRIBUTOR", "body": "Me too",
              "html_url": "https://github.com/octo-org/Hello-World/issues/1347#issuecomment-1146825"}
    fields.update(overrides)
    return fields


def discussion(**overrides) -> dict:
    fields = {"repository_url": "https://api.github.com/repos/octo-org/Hello-World",
              "category": {"id": 29347581, "node_id": "DIC_kwDO", "repository_id": 1296269, "emoji": ":pray:",
                           "name": "Q&A", "description": "Ask the community for help", "slug": "q-a",
                           "is_answerable": True},
              "answer_html_url": None, "answer_chosen_at": None, "answer_chosen_by": None,
              "html_url": "https://github.com/octo-org/Hello-World/discussions/90", "id": 3741432, "node_id": "D_kwDO",
              "number": 90, "title": "How do I configure hooks?", "user": OCTOCAT, "state": "open", "locked": False,
              "comments": 0, "created_at": "2025-03-01T13:00:00Z", "updated_at": "2025-03-01T13:00:00Z",
              "author_association": "OWNER", "active_lock_reason": None, "body": "Where do I start?"}
    fields.update(overrides)
    return fields


def discussion_comment(**overrides) -> dict:
    fields = {"id": 2279340, "node_id": "DC_kwDO", "html_url":
              "https://github.com/octo-org/Hello-World/discussions/90#discussioncomment-2279340",
              "parent_id": None, "child_comment_count": 0,
              "repository_url": "octo-org/Hello-World", "discussion_id": 3741432, "author_association": "NONE",
              "user": HUBOT, "created_at": "2025-03-01T13:05:00Z", "updated_at": "2025-03-01T13:05:00Z",
              "body": "Start with the docs."}
    fields.update(overrides)
    return fields


def envelope(action: str, **objects) -> dict:
    return {"action": action, **objects, "repository": REPOSITORY, "organization": ORGANIZATION, "sender": OCTOCAT}


def delivery(event: str, body: dict | bytes, *, guid: str = GUID, secret: str = SECRET,
             drop: tuple[str, ...] = ()) -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd", "X-GitHub-Event": event,
               "X-GitHub-Delivery": guid, "X-GitHub-Hook-ID": "292430182", "X-Hub-Signature-256": sign(secret, raw),
               "X-GitHub-Hook-Installation-Target-Type": "repository",
               "X-GitHub-Hook-Installation-Target-ID": "1296269"}
    for name in drop:
        headers.pop(name)
    return Delivery(raw, httpx.Headers(headers), 1740830400.0, 300)


def run(event: str, body: dict, **kwargs):
    d = delivery(event, body, **kwargs)
    verify(d, SECRET)
    return normalize(json.loads(d.body), d)


def test_valid_signature_passes():
    verify(delivery("issues", envelope("opened", issue=issue())), SECRET)


@pytest.mark.parametrize("case, reason", [
    ("wrong secret", "does not match"), ("tampered body", "does not match"),
    ("missing header", "missing X-Hub-Signature-256"),
])
def test_bad_signatures_are_refused(case, reason):
    d = delivery("issues", envelope("opened", issue=issue()), secret="other" if case == "wrong secret" else SECRET,
                 drop=("X-Hub-Signature-256",) if case == "missing header" else ())
    if case == "tampered body":
        d = Delivery(d.body.replace(b"Found a bug", b"Found a fix"), d.headers, d.now, d.tolerance_s)
    with pytest.raises(SignatureError, match=reason):
        verify(d, SECRET)


def test_issue_opened_is_message_posted_with_title_and_body():
    [event] = run("issues", envelope("opened", issue=issue())).events
    assert event.kind is ActivityKind.message_posted
    assert event.event_id == f"github:{GUID}"
    assert (event.community_id, event.channel_id, event.member_id) == ("octo-org", "octo-org/Hello-World", "1")
    assert (event.message_id, event.reply_to) == ("octo-org/Hello-World#1347", None)
    assert event.text == "Found a bug\n\nI'm having a problem with this."
    assert event.permalink == "https://github.com/octo-org/Hello-World/issues/1347"
    assert event.occurred_at.isoformat() == "2025-03-01T12:00:00+00:00"
    assert event.attributes["login"] == "octocat"


def test_issue_edited_and_deleted():
    [edited] = run("issues", {**envelope("edited", issue=issue(title="Found two bugs",
                                                                 updated_at="2025-03-01T12:30:00Z")),
                              "changes": {"title": {"from": "Found a bug"}}}).events
    assert (edited.kind, edited.message_id) == (ActivityKind.message_edited, "octo-org/Hello-World#1347")
    assert edited.occurred_at.isoformat() == "2025-03-01T12:30:00+00:00"
    assert edited.attributes["changed"] == ["title"]
    [deleted] = run("issues", {**envelope("deleted", issue=issue()), "sender": HUBOT}).events
    assert (deleted.kind, deleted.text, deleted.member_id) == (ActivityKind.message_deleted, None, "1")
    assert deleted.attributes["actor"] == "hubot"  # deleted by someone other than the author


@pytest.mark.parametrize("action, kind", [
    ("created", ActivityKind.message_posted), ("edited", ActivityKind.message_edited),
    ("deleted", ActivityKind.message_deleted),
])
def test_issue_comment_replies_to_its_issue(action, kind):
    [event] = run("issue_comment", envelope(action, issue=issue(), comment=issue_comment())).events
    assert event.kind is kind
    assert event.message_id == "octo-org/Hello-World#1347#issuecomment-1146825"
    assert event.reply_to == "octo-org/Hello-World#1347"
    assert event.member_id == "2"


def test_comment_on_a_pull_request_is_marked():
    pr_issue = issue(pull_request={"url": "https://api.github.com/repos/octo-org/Hello-World/pulls/1347"})
    [event] = run("issue_comment", envelope("created", issue=pr_issue, comment=issue_comment())).events
    assert event.attributes["is_pull_request"] is True


def test_discussion_in_an_answerable_category_is_a_question():
    [event] = run("discussion", envelope("created", discussion=discussion())).events
    assert event.kind is ActivityKind.message_posted
    assert (event.message_id, event.reply_to) == ("octo-org/Hello-World/discussions/90", None)
    assert event.text == "How do I configure hooks?\n\nWhere do I start?"
    assert event.attributes["is_question"] is True
    [edited] = run("discussion", envelope("edited", discussion=discussion())).events
    assert edited.kind is ActivityKind.message_edited
    [deleted] = run("discussion", envelope("deleted", discussion=discussion())).events
    assert deleted.kind is ActivityKind.message_deleted


def test_discussion_comment_and_threaded_reply():
    [top] = run("discussion_comment", envelope("created", discussion=discussion(),
                                               comment=discussion_comment())).events
    assert top.message_id == "octo-org/Hello-World/discussions/90#discussioncomment-2279340"
    assert top.reply_to == "octo-org/Hello-World/discussions/90"
    [reply] = run("discussion_comment", envelope("created", discussion=discussion(), comment=discussion_comment(
        id=2279400, parent_id=2279340, user=OCTOCAT, body="Thanks!"))).events
    assert reply.reply_to == "octo-org/Hello-World/discussions/90#discussioncomment-2279340"
    [edited] = run("discussion_comment", envelope("edited", discussion=discussion(),
                                                  comment=discussion_comment())).events
    assert edited.kind is ActivityKind.message_edited
    [deleted] = run("discussion_comment", envelope("deleted", discussion=discussion(),
                                                   comment=discussion_comment())).events
    assert deleted.kind is ActivityKind.message_deleted


def test_community_falls_back_to_the_organization():
    body = envelope("opened", issue=issue())
    body["repository"] = {**REPOSITORY, "owner": {}}
    assert run("issues", body).events[0].community_id == "octo-org"


def test_a_redelivery_has_the_same_event_id():
    body = envelope("created", issue=issue(), comment=issue_comment())
    assert run("issue_comment", body).events[0].event_id == run("issue_comment", body).events[0].event_id


@pytest.mark.parametrize("event, body, reason", [
    ("ping", {"zen": "Design for failure.", "hook_id": 292430182, "hook": {"type": "Repository"}}, "ping"),
    ("issues", envelope("labeled", issue=issue(), label={"name": "bug"}), "issues labeled"),
    ("discussion", envelope("answered", discussion=discussion()), "discussion answered"),
    ("push", {"ref": "refs/heads/main"}, "event push"),
    ("issue_comment", envelope("created", issue=issue(), comment=issue_comment(
        user={"login": "dependabot[bot]", "id": 49699333, "type": "Bot"})), "issue_comment created by a bot"),
])
def test_ignored_events(event, body, reason):
    assert run(event, body).ignored == reason


@pytest.mark.parametrize("event, body, drop, reason", [
    ("issues", {"issue": issue(), "repository": REPOSITORY}, (), "without an action"),
    ("issues", envelope("opened"), (), "issues.issue is missing"),
    ("issue_comment", envelope("created", issue=issue()), (), "issue_comment.comment is missing"),
    ("issues", {"action": "opened", "issue": issue()}, (), "neither repository.owner.login nor organization"),
    ("issues", envelope("opened", issue=issue(created_at=12)), (), "issue.created_at"),
    ("issues", envelope("opened", issue=issue(user=None)), (), "issue.user is missing"),
    ("issues", envelope("opened", issue=issue()), ("X-GitHub-Delivery",), "missing X-GitHub-Delivery"),
    ("issues", envelope("opened", issue=issue()), ("X-GitHub-Event",), "missing X-GitHub-Event"),
])
def test_malformed_signed_bodies_say_why(event, body, drop, reason):
    d = delivery(event, body, drop=drop)
    verify(d, SECRET)
    with pytest.raises(MalformedPayload, match=reason):
        normalize(json.loads(d.body), d)


@pytest.fixture(scope="module")
def client() -> TestClient:
    connections = Connections([Connection(name="default", platform="github", secret=SecretStr(SECRET))], environ={})
    return TestClient(create_service(IngestSettings(kafka_bootstrap="127.0.0.1:1"), connections).app)


def test_http_bad_signature_is_401_with_a_reason(client):
    d = delivery("issues", envelope("opened", issue=issue()), secret="wrong")
    response = client.post("/webhooks/github", content=d.body, headers=dict(d.headers))
    assert response.status_code == 401
    assert "X-Hub-Signature-256 does not match" in response.json()["detail"]


def test_http_malformed_signed_body_is_400_with_a_reason(client):
    d = delivery("issues", {"action": "opened", "repository": REPOSITORY})
    response = client.post("/webhooks/github", content=d.body, headers=dict(d.headers))
    assert response.status_code == 400
    assert "issues.issue is missing" in response.json()["detail"]
