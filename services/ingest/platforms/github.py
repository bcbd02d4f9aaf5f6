"""GitHub webhooks: issues, issue comments, discussions and discussion comments.

GitHub names the event in ``X-GitHub-Event``, the delivery in ``X-GitHub-Delivery`` (a GUID
that a redelivery keeps) and signs the raw body: ``X-Hub-Signature-256: sha256=<hex
HMAC-SHA256(secret, body)>``, with no timestamp. The event id is ``github:{delivery GUID}``.

GitHub never retries a failed delivery on its own: ``services.ingest.github_redeliver``
pulls missed ones back through the REST API, and they arrive here with the same GUID.
"""

from datetime import UTC, datetime
from typing import Any

from schemas import ActivityKind, MemberActivity, Platform
from services.ingest.platforms import (
    body_signature,
    iso_timestamp,
    Delivery,
    MalformedPayload,
    Normalized,
    WebhookSource,
)
from services.ingest.signatures import sign_body

# (event, action) -> kind. Every other action of these events is ignored.
ACTIONS: dict[tuple[str, str], ActivityKind] = {
    ("issues", "opened"): ActivityKind.message_posted,
    ("issues", "edited"): ActivityKind.message_edited,
    ("issues", "deleted"): ActivityKind.message_deleted,
    ("issue_comment", "created"): ActivityKind.message_posted,
    ("issue_comment", "edited"): ActivityKind.message_edited,
    ("issue_comment", "deleted"): ActivityKind.message_deleted,
    ("discussion", "created"): ActivityKind.message_posted,
    ("discussion", "edited"): ActivityKind.message_edited,
    ("discussion", "deleted"): ActivityKind.message_deleted,
    ("discussion_comment", "created"): ActivityKind.message_posted,
    ("discussion_comment", "edited"): ActivityKind.message_edited,
    ("discussion_comment", "deleted"): ActivityKind.message_deleted,
}
EVENTS = frozenset(event for event, _ in ACTIONS)

KEPT_ATTRIBUTES = ("author_association", "state", "node_id")


def _object(obj: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what}.{key} is missing or not an object")
    return value


def _integer(obj: dict[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload(f"{what}.{key} is missing or not an integer")
    return value


def _community(payload: dict[str, Any]) -> str:
    repository = payload.get("repository")
    if isinstance(repository, dict) and isinstance(repository.get("owner"), dict):
        login = repository["owner"].get("login")
        if login:
            return login
    organization = payload.get("organization")
    if isinstance(organization, dict) and organization.get("login"):
        return organization["login"]
    raise MalformedPayload("payload names neither repository.owner.login nor organization.login")


def _thread(event: str, payload: dict[str, Any], repo: str) -> tuple[dict[str, Any], str]:
    """The issue or discussion the event is about, and its message id."""
    if event in ("issues", "issue_comment"):
        issue = _object(payload, "issue", event)
        return issue, f"{repo}#{_integer(issue, 'number', 'issue')}"
    discussion = _object(payload, "discussion", event)
    return discussion, f"{repo}/discussions/{_integer(discussion, 'number', 'discussion')}"


def _comment_ref(event: str, thread_ref: str, comment_id: int) -> str:
    anchor = "issuecomment" if event == "issue_comment" else "discussioncomment"
    return f"{thread_ref}#{anchor}-{comment_id}"


def _occurred_at(kind: ActivityKind, obj: dict[str, Any], what: str, delivery: Delivery) -> datetime:
    if kind is ActivityKind.message_posted:
        return iso_timestamp(obj.get("created_at"), f"{what}.created_at")
    if kind is ActivityKind.message_edited:
        return iso_timestamp(obj.get("updated_at"), f"{what}.updated_at")
    # GitHub sends no deletion time; the delivery's arrival is the closest thing to it.
    return datetime.fromtimestamp(delivery.now, UTC)


def normalize(payload: Any, delivery: Delivery) -> Normalized:
    event = delivery.header("X-GitHub-Event")
    if not event:
        raise MalformedPayload("missing X-GitHub-Event header")
    guid = delivery.header("X-GitHub-Delivery")
    if not guid:
        raise MalformedPayload("missing X-GitHub-Delivery header")
    if event == "ping":
        return Normalized(ignored="ping")
    if event not in EVENTS:
        return Normalized(ignored=f"event {event}")
    if not isinstance(payload, dict):
        raise MalformedPayload(f"{event} body must be a JSON object")
    action = payload.get("action")
    if not isinstance(action, str):
        raise MalformedPayload(f"{event} without an action")
    kind = ACTIONS.get((event, action))
    if kind is None:
        return Normalized(ignored=f"{event} {action}")

    community_id = _community(payload)
    repository = _object(payload, "repository", event)
    repo = repository.get("full_name")
    if not isinstance(repo, str) or "/" not in repo:
        raise MalformedPayload("repository.full_name is missing")
    thread, thread_ref = _thread(event, payload, repo)

    if event in ("issues", "discussion"):
        subject, what = thread, event.rstrip("s")
        message_id, reply_to = thread_ref, None
        title, body = thread.get("title"), thread.get("body")
        text = f"{title}\n\n{body}" if title and body else (title or body)
    else:
        subject, what = _object(payload, "comment", event), "comment"
        comment_id = _integer(subject, "id", "comment")
        message_id = _comment_ref(event, thread_ref, comment_id)
        parent_id = subject.get("parent_id")  # discussion_comment: threaded replies
        if parent_id is not None and (isinstance(parent_id, bool) or not isinstance(parent_id, int)):
            raise MalformedPayload("comment.parent_id is not an integer")
        reply_to = _comment_ref(event, thread_ref, parent_id) if parent_id is not None else thread_ref
        text = subject.get("body")

    author = _object(subject, "user", what)
    author_id = _integer(author, "id", f"{what}.user")
    if author.get("type") == "Bot":
        return Normalized(ignored=f"{event} {action} by a bot")

    attributes: dict[str, Any] = {
        "event": event, "action": action, "repository": repo, "login": author.get("login"),
        **{k: subject[k] for k in KEPT_ATTRIBUTES if k in subject},
    }
    sender = payload.get("sender")
    if isinstance(sender, dict) and sender.get("login") and sender.get("login") != author.get("login"):
        attributes["actor"] = sender["login"]  # e.g. a maintainer who edited or deleted it
    if event in ("issues", "issue_comment"):
        attributes["issue_number"] = thread.get("number")
        if thread.get("pull_request"):
            attributes["is_pull_request"] = True
    else:
        attributes["discussion_number"] = thread.get("number")
        category = thread.get("category")
        if isinstance(category, dict):
            attributes["category"] = category.get("slug") or category.get("name")
            if event == "discussion" and category.get("is_answerable"):
                attributes["is_question"] = True  # a Q&A category: GitHub marks it answerable
    if isinstance(payload.get("changes"), dict):
        attributes["changed"] = sorted(payload["changes"])

    return Normalized(events=[MemberActivity(
        event_id=f"github:{guid}",
        platform=Platform.github,
        community_id=community_id,
        channel_id=repo,
        member_id=str(author_id),
        kind=kind,
        occurred_at=_occurred_at(kind, subject, what, delivery),
        message_id=message_id,
        reply_to=reply_to,
        text=None if kind is ActivityKind.message_deleted else text,
        permalink=subject.get("html_url"),
        attributes=attributes,
    )])


SIGNATURE_HEADER = "X-Hub-Signature-256"
sign = sign_body
verify = body_signature(SIGNATURE_HEADER)


SOURCE = WebhookSource(
    name="github",
    summary="GitHub webhooks: issues, issue_comment, discussion, discussion_comment (X-Hub-Signature-256)",
    verify=verify,
    normalize=normalize,
)
