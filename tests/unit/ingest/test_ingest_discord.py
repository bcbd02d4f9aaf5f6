"""Discord: Ed25519 interaction signatures, interaction answers, and the Gateway mapping."""

import json
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from pydantic import SecretStr

from schemas import ActivityKind, Platform
from services.ingest.platforms import Delivery, MalformedPayload, sources
from services.ingest.platforms.discord import (
    SOURCE,
    GatewayMemory,
    normalize,
    normalize_dispatch,
    snowflake_time,
    verify,
)
from services.ingest.signatures import SignatureError

GUILD, CHANNEL, THREAD = "197038439483310086", "290926798999357250", "1100000000000000000"
USER, OTHER, BOT = "80351110224678912", "53908232506183680", "1000000000000000001"
MESSAGE = "1180000000000000000"  # a snowflake: 2023-11-29
RECEIVED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def key_pair() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, public.hex()


def signed(private: Ed25519PrivateKey, body: bytes, timestamp: int) -> dict[str, str]:
    signature = private.sign(str(timestamp).encode() + body)
    return {"X-Signature-Ed25519": signature.hex(), "X-Signature-Timestamp": str(timestamp),
            "Content-Type": "application/json"}


def delivery(body: bytes, headers: dict[str, str], now: float) -> Delivery:
    return Delivery(body, {k: v for k, v in headers.items()}, now, 300)


PING = json.dumps({"type": 1, "id": "1", "application_id": "2", "token": "t", "version": 1}).encode()

# ---------------------------------------------------------------- signatures


def test_valid_signature_passes():
    private, public = key_pair()
    now = 1_700_000_000
    verify(delivery(PING, signed(private, PING, now), now + 10), public)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered", "does not match the body"),
        ("wrong_key", "does not match the body"),
        ("old_timestamp", "outside the 300s window"),
        ("bad_hex_signature", "is not hex"),
        ("short_signature", "64-byte"),
        ("bad_hex_key", "public key is not 32 bytes of hex"),
        ("missing_signature", "missing X-Signature-Ed25519"),
        ("missing_timestamp", "missing request timestamp"),
        ("no_key", "no signing secret"),
    ],
)
def test_bad_signatures_fail_with_a_reason(case: str, reason: str):
    private, public = key_pair()
    now = 1_700_000_000
    headers, body, key, at = signed(private, PING, now), PING, public, now
    if case == "tampered":
        body = PING.replace(b'"type": 1', b'"type": 2')
    elif case == "wrong_key":
        key = key_pair()[1]
    elif case == "old_timestamp":
        headers = signed(private, PING, now - 301)
    elif case == "bad_hex_signature":
        headers["X-Signature-Ed25519"] = "zz" * 64
    elif case == "short_signature":
        headers["X-Signature-Ed25519"] = headers["X-Signature-Ed25519"][:64]
    elif case == "bad_hex_key":
        key = "not-a-key"
    elif case == "missing_signature":
        del headers["X-Signature-Ed25519"]
    elif case == "missing_timestamp":
        del headers["X-Signature-Timestamp"]
    elif case == "no_key":
        key = ""
    with pytest.raises(SignatureError, match=reason):
        verify(delivery(body, headers, at), key)


def test_the_timestamp_is_signed_too():
    private, public = key_pair()
    now = 1_700_000_000
    headers = signed(private, PING, now)
    headers["X-Signature-Timestamp"] = str(now + 1)  # fresh, but not the one signed
    with pytest.raises(SignatureError, match="does not match"):
        verify(delivery(PING, headers, now), public)


# ---------------------------------------------------------------- interactions


def test_ping_gets_pong_and_no_events():
    result = normalize(json.loads(PING))
    assert result.reply == {"type": 1}
    assert result.events == []


def test_other_interactions_are_acknowledged_without_events():
    command = normalize({"type": 2, "data": {"name": "steward"}})
    assert command.reply["type"] == 4 and command.reply["data"]["flags"] == 64  # ephemeral
    assert normalize({"type": 3}).reply == {"type": 6}  # button: deferred update
    assert normalize({"type": 4}).reply == {"type": 8, "data": {"choices": []}}
    assert normalize({"type": 5}).reply["type"] == 4
    with pytest.raises(MalformedPayload):
        normalize({"type": 99})
    with pytest.raises(MalformedPayload):
        normalize(["not", "an", "interaction"])


def test_discord_is_discovered_as_a_source():
    assert sources()["discord"] is SOURCE
    assert SOURCE.accepted_status == 200


def test_through_the_http_app():
    from services.ingest.app import create_service
    from services.ingest.connections import Connection, Connections
    from services.runtime.settings import IngestSettings

    private, public = key_pair()
    connections = Connections(
        [Connection(name="default", platform="discord", secret=SecretStr(public))], environ={}
    )
    client = TestClient(create_service(IngestSettings(kafka_bootstrap="127.0.0.1:1"), connections).app)
    now = int(time.time())
    answer = client.post("/webhooks/discord", content=PING, headers=signed(private, PING, now))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"type": 1}

    forged = signed(key_pair()[0], PING, now)
    refused = client.post("/webhooks/discord", content=PING, headers=forged)
    assert refused.status_code == 401
    assert "X-Signature-Ed25519 does not match the body" in refused.json()["detail"]


# ---------------------------------------------------------------- Gateway mapping


def author(user_id: str = USER, **extra) -> dict:
    return {"id": user_id, "username": "nelly", "discriminator": "0", "global_name": "Nelly", "avatar": None,
            **extra}


def message_create(**overrides) -> dict:
    data = {
        "id": MESSAGE, "channel_id": CHANNEL, "guild_id": GUILD, "author": author(),
        "member": {"roles": [], "joined_at": "2023-01-01T00:00:00.000000+00:00", "deaf": False, "mute": False},
        "content": "How do I reset my password?", "timestamp": "2023-11-29T10:00:00.123000+00:00",
        "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": [], "pinned": False, "type": 0, "flags": 0, "nonce": "123",
    }
    data.update(overrides)
    return data


def dispatch(name: str, data: dict, memory: GatewayMemory | None = None):
    return normalize_dispatch(name, data, received_at=RECEIVED, memory=memory)


def test_snowflake_time():
    # Discord's documented example: 175928847299117063 was minted 2016-04-30 11:18:25.796 UTC.
    assert snowflake_time("175928847299117063") == datetime(2016, 4, 30, 11, 18, 25, 796000, tzinfo=UTC)


def test_message_create_is_message_posted():
    event = dispatch("MESSAGE_CREATE", message_create())
    assert event.kind is ActivityKind.message_posted
    assert event.platform is Platform.discord
    assert event.event_id == f"discord:{GUILD}:{MESSAGE}:created"
    assert (event.community_id, event.channel_id, event.member_id) == (GUILD, CHANNEL, USER)
    assert event.message_id == MESSAGE
    assert event.reply_to is None
    assert event.text == "How do I reset my password?"
    assert event.occurred_at == datetime(2023, 11, 29, 10, 0, 0, 123000, tzinfo=UTC)
    assert event.received_at == RECEIVED
    assert event.permalink == f"https://discord.com/channels/{GUILD}/{CHANNEL}/{MESSAGE}"


def test_reply_and_thread_message():
    reply = dispatch("MESSAGE_CREATE", message_create(
        id="1180000000000000100", type=19, author=author(OTHER),
        message_reference={"type": 0, "message_id": MESSAGE, "channel_id": CHANNEL, "guild_id": GUILD},
    ))
    assert reply.reply_to == MESSAGE
    assert reply.member_id == OTHER
    in_thread = dispatch("MESSAGE_CREATE", message_create(id="1180000000000000200", channel_id=THREAD))
    assert in_thread.channel_id == THREAD  # a thread is its own channel
    forward = dispatch("MESSAGE_CREATE", message_create(
        id="1180000000000000300", message_reference={"type": 1, "message_id": MESSAGE, "channel_id": CHANNEL},
    ))
    assert forward.reply_to is None  # a forward quotes, it does not answer


def test_occurred_at_falls_back_to_the_snowflake():
    data = message_create()
    del data["timestamp"]
    assert dispatch("MESSAGE_CREATE", data).occurred_at == snowflake_time(MESSAGE)


def test_bots_webhooks_system_messages_and_dms_are_ignored():
    assert dispatch("MESSAGE_CREATE", message_create(author=author(BOT, bot=True))) is None
    assert dispatch("MESSAGE_CREATE", message_create(webhook_id="42")) is None
    assert dispatch("MESSAGE_CREATE", message_create(type=7)) is None  # "X joined the server"
    dm = message_create()
    del dm["guild_id"], dm["member"]
    assert dispatch("MESSAGE_CREATE", dm) is None
    assert dispatch("TYPING_START", {"guild_id": GUILD, "user_id": USER}) is None
    bot_reaction = {"user_id": BOT, "channel_id": CHANNEL, "message_id": MESSAGE, "guild_id": GUILD,
                    "member": {"user": author(BOT, bot=True)}, "emoji": {"id": None, "name": "👍"}}
    assert dispatch("MESSAGE_REACTION_ADD", bot_reaction) is None


def test_message_update_is_message_edited_keyed_by_edit_time():
    edited = "2023-11-29T10:05:00.000000+00:00"
    event = dispatch("MESSAGE_UPDATE", message_create(content="fixed", edited_timestamp=edited))
    assert event.kind is ActivityKind.message_edited
    assert event.event_id == f"discord:{GUILD}:{MESSAGE}:edited:{edited}"
    assert event.occurred_at == datetime(2023, 11, 29, 10, 5, tzinfo=UTC)
    assert event.text == "fixed"
    again = dispatch("MESSAGE_UPDATE", message_create(content="fixed again",
                                                      edited_timestamp="2023-11-29T10:06:00.000000+00:00"))
    assert again.event_id != event.event_id  # a second edit is a second event
    # An embed unfurl re-sends the message with no edit: not an edit.
    assert dispatch("MESSAGE_UPDATE", message_create(embeds=[{"type": "link"}])) is None


def test_partial_update_finds_its_author_in_memory():
    memory = GatewayMemory()
    memory.observe("MESSAGE_CREATE", message_create())
    partial = {"id": MESSAGE, "channel_id": CHANNEL, "guild_id": GUILD, "content": "new",
               "edited_timestamp": "2023-11-29T10:05:00+00:00"}
    assert dispatch("MESSAGE_UPDATE", partial, memory).member_id == USER
    assert dispatch("MESSAGE_UPDATE", partial) is None  # nobody to attribute it to


def test_message_delete_needs_the_author_from_memory():
    memory = GatewayMemory()
    deleted = {"id": MESSAGE, "channel_id": CHANNEL, "guild_id": GUILD}
    assert dispatch("MESSAGE_DELETE", deleted, memory) is None
    memory.observe("MESSAGE_CREATE", message_create())
    event = dispatch("MESSAGE_DELETE", deleted, memory)
    assert event.kind is ActivityKind.message_deleted
    assert event.event_id == f"discord:{GUILD}:{MESSAGE}:deleted"
    assert (event.member_id, event.message_id, event.text) == (USER, MESSAGE, None)
    assert event.occurred_at == RECEIVED  # no timestamp in the payload


def test_reaction_added():
    data = {"user_id": OTHER, "channel_id": CHANNEL, "message_id": MESSAGE, "guild_id": GUILD,
            "member": {"user": author(OTHER), "roles": []}, "emoji": {"id": None, "name": "🔥"},
            "message_author_id": USER, "burst": False, "type": 0}
    event = dispatch("MESSAGE_REACTION_ADD", data)
    assert event.kind is ActivityKind.reaction_added
    assert event.event_id == f"discord:{GUILD}:{MESSAGE}:{OTHER}:🔥:reacted"
    assert (event.member_id, event.message_id, event.channel_id) == (OTHER, MESSAGE, CHANNEL)
    assert event.attributes["message_author_id"] == USER
    custom = dispatch("MESSAGE_REACTION_ADD", {**data, "emoji": {"id": "41771983429993937", "name": "LUL"}})
    assert custom.event_id == f"discord:{GUILD}:{MESSAGE}:{OTHER}:41771983429993937:reacted"
    burst = dispatch("MESSAGE_REACTION_ADD", {**data, "burst": True, "type": 1})
    assert burst.event_id.endswith(":reacted:burst")


def test_member_joined_and_left():
    joined_at = "2024-01-01T12:00:00.000000+00:00"
    add = {"guild_id": GUILD, "user": author(), "roles": [], "joined_at": joined_at, "deaf": False,
           "mute": False, "flags": 0, "pending": False}
    joined = dispatch("GUILD_MEMBER_ADD", add)
    assert joined.kind is ActivityKind.member_joined
    assert joined.event_id == f"discord:{GUILD}:{USER}:joined:{joined_at}"
    assert joined.occurred_at == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert joined.channel_id is None

    remove = {"guild_id": GUILD, "user": author()}
    left = dispatch("GUILD_MEMBER_REMOVE", remove)
    assert left.kind is ActivityKind.member_left
    assert left.event_id == f"discord:{GUILD}:{USER}:left"
    memory = GatewayMemory()
    memory.observe("GUILD_MEMBER_ADD", add)
    # With the join seen, each membership's leave has its own id: a rejoin-and-leave is not a replay.
    assert dispatch("GUILD_MEMBER_REMOVE", remove, memory).event_id == f"discord:{GUILD}:{USER}:left:{joined_at}"
    assert dispatch("GUILD_MEMBER_ADD", {**add, "user": author(BOT, bot=True)}) is None


def test_scheduled_event_rsvp():
    data = {"guild_scheduled_event_id": "1190000000000000000", "user_id": USER, "guild_id": GUILD}
    event = dispatch("GUILD_SCHEDULED_EVENT_USER_ADD", data)
    assert event.kind is ActivityKind.event_rsvp
    assert event.event_id == f"discord:{GUILD}:1190000000000000000:{USER}:rsvp"
    assert event.attributes == {"scheduled_event_id": "1190000000000000000"}


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("MESSAGE_CREATE", message_create()),
        ("MESSAGE_UPDATE", message_create(edited_timestamp="2023-11-29T10:05:00+00:00")),
        ("MESSAGE_REACTION_ADD", {"user_id": OTHER, "channel_id": CHANNEL, "message_id": MESSAGE,
                                  "guild_id": GUILD, "emoji": {"id": None, "name": "👍"}}),
        ("GUILD_MEMBER_ADD", {"guild_id": GUILD, "user": author(), "joined_at": "2024-01-01T12:00:00+00:00"}),
        ("GUILD_MEMBER_REMOVE", {"guild_id": GUILD, "user": author()}),
        ("GUILD_SCHEDULED_EVENT_USER_ADD", {"guild_scheduled_event_id": "1", "user_id": USER, "guild_id": GUILD}),
    ],
)
def test_event_id_is_the_same_when_the_event_is_seen_again(name: str, data: dict):
    first = normalize_dispatch(name, json.loads(json.dumps(data)), received_at=RECEIVED)
    replayed = normalize_dispatch(name, json.loads(json.dumps(data)), received_at=datetime.now(UTC))
    assert first.event_id == replayed.event_id
    assert first.partition_key() == replayed.partition_key()


def test_event_ids_differ_between_events():
    ids = {
        dispatch("MESSAGE_CREATE", message_create()).event_id,
        dispatch("MESSAGE_CREATE", message_create(id="1180000000000000001")).event_id,
        dispatch("MESSAGE_UPDATE", message_create(edited_timestamp="2023-11-29T10:05:00+00:00")).event_id,
    }
    assert len(ids) == 3


def test_mapped_event_without_ids_is_malformed():
    with pytest.raises(MalformedPayload):
        dispatch("MESSAGE_REACTION_ADD", {"guild_id": GUILD, "channel_id": CHANNEL})
    with pytest.raises(MalformedPayload):
        dispatch("MESSAGE_CREATE", message_create(author={}))
