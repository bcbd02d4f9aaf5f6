"""How metrics state is laid out in documents: bounded, compact, and the same everywhere.

- A member's active days are a bitmap in blocks of 63 days (one int64 each, positive), so
  a member costs a few numbers per year of activity rather than an array that grows with
  every event.
- Facts are packed per (community, day, partition, batch) as one zlib-compressed JSON
  array: a batch of thousands of events is one small insert, kept under a TTL.
"""

from __future__ import annotations

import json
import zlib

from services.metrics.kpis.calendar import Day
from services.metrics.kpis.facts import ActivityFact, VerdictFact
from services.metrics.kpis.members import MemberState

BLOCK = 63


def encode_days(days: set[Day]) -> dict[str, int]:
    blocks: dict[str, int] = {}
    for day in days:
        key = str(day // BLOCK)
        blocks[key] = blocks.get(key, 0) | (1 << (day % BLOCK))
    return blocks


def decode_days(blocks: dict[str, int]) -> set[Day]:
    return {int(key) * BLOCK + bit for key, bits in blocks.items() for bit in range(BLOCK) if bits >> bit & 1}


def encode_member(state: MemberState) -> dict:
    return {
        "first_seen": state.first_seen,
        "membership": [[at, kind] for at, kind in state.membership],
        "active": encode_days(state.active),
    }


def decode_member(document: dict) -> MemberState:
    return MemberState(
        document.get("first_seen"),
        [(at, kind) for at, kind in document.get("membership", [])],
        decode_days(document.get("active", {})),
    )


def pack(rows: list[list]) -> bytes:
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)


def unpack_activity(blob: bytes) -> list[ActivityFact]:
    return [ActivityFact(*row) for row in json.loads(zlib.decompress(blob))]


def unpack_verdicts(blob: bytes) -> list[VerdictFact]:
    return [VerdictFact(*row) for row in json.loads(zlib.decompress(blob))]


def event_ids(blob: bytes) -> list[str]:
    return [row[0] for row in json.loads(zlib.decompress(blob))]
