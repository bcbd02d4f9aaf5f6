"""How metrics state is laid out in documents: bounded, compact, and the same everywhere.

- A member is its first-seen time, its (capped) membership events and its bit number.
- Who was active on a day is one bitmap per (day, partition), as little-endian bytes.
- Facts are packed per (community, day, partition, batch) as one zlib-compressed JSON
  array: a batch of thousands of events is one small insert, kept under a TTL.
"""

from __future__ import annotations

import json
import zlib

from services.metrics.kpis.facts import ActivityFact, VerdictFact
from services.metrics.kpis.members import LEAVE, MemberState


def encode_member(state: MemberState) -> dict:
    return {
        "first_seen": state.first_seen,
        "membership": [[at, kind] for at, kind in state.membership],
        "idx": state.index,
        "left": any(kind == LEAVE for _, kind in state.membership),  # engaged(D) reads these
    }


def decode_member(document: dict) -> MemberState:
    return MemberState(
        document.get("first_seen"),
        [(at, kind) for at, kind in document.get("membership", [])],
        document.get("idx"),
    )


def pack(rows: list[list]) -> bytes:
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)


def unpack_activity(blob: bytes) -> list[ActivityFact]:
    return [ActivityFact(*row) for row in json.loads(zlib.decompress(blob))]


def unpack_verdicts(blob: bytes) -> list[VerdictFact]:
    return [VerdictFact(*row) for row in json.loads(zlib.decompress(blob))]


def event_ids(blob: bytes) -> list[str]:
    return [row[0] for row in json.loads(zlib.decompress(blob))]
