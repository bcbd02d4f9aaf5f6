"""The notifier's timers in MongoDB: aggregation groups and escalations, one document each.

Several notifier replicas share them. Every change is a compare-and-swap on the document's
``rev`` (read, apply a pure function, replace only if ``rev`` is unchanged, else read
again), so concurrent changes never overwrite each other. A replica that sends a
notification first takes a lease on the document (again by compare-and-swap): the other
replicas leave a leased document alone until the lease runs out, which is how two replicas
never send the same notification, and how a crashed replica's work is taken over.

``due`` (seconds since the epoch, a number so that every MongoDB-protocol server compares
it alike) is when the document next has work; ``lease_until`` likewise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.notifier.escalation import EscalationState
from services.notifier.grouping import GroupState

__all__ = ["Leased", "TimerStore", "escalation_timers", "group_timers"]

S = TypeVar("S")
NEVER = 1e18
"""``due`` of a document with nothing scheduled (a finished escalation)."""
CAS_ATTEMPTS = 100
"""Compare-and-swap retries; each lost race means another writer made progress."""


@dataclass(frozen=True)
class Leased(Generic[S]):
    """A state this replica holds the lease of, as of ``rev``."""

    key: str
    state: S
    rev: int
    until: float


class TimerStore(Generic[S]):
    def __init__(
        self,
        collection: AsyncCollection,
        *,
        load: Callable[[Mapping[str, Any]], S],
        dump: Callable[[S], dict[str, Any]],
        due: Callable[[S], datetime | None],
        owner: str,
    ) -> None:
        self.collection = collection
        self._load, self._dump, self._due = load, dump, due
        self.owner = owner

    async def create_indexes(self) -> None:
        await self.collection.create_index([("due", ASCENDING)])

    def _document(self, state: S, rev: int, lease: tuple[str, float]) -> dict[str, Any]:
        when = self._due(state)
        return {**self._dump(state), "rev": rev, "due": when.timestamp() if when else NEVER,
                "lease_owner": lease[0], "lease_until": lease[1]}

    async def get(self, key: str) -> S | None:
        doc = await self.collection.find_one({"_id": key})
        return self._load(doc) if doc else None

    async def change(self, key: str, apply: Callable[[S | None], S | None], *,
                     release: bool = False, held: Leased[S] | None = None) -> S | None:
        """Apply ``apply`` to the stored state (``None`` when absent) until it sticks; a
        ``None`` result deletes the document. ``release`` drops this replica's lease.
        ``held``: the lease this replica took; when nobody wrote since, one write does."""
        if held is not None:
            new = apply(held.state)
            if new is not None:
                lease = ("", 0.0) if release else (self.owner, held.until)
                done = await self.collection.replace_one(
                    {"_id": key, "rev": held.rev}, self._document(new, held.rev + 1, lease))
                if done.matched_count:
                    return new
        for _ in range(CAS_ATTEMPTS):
            doc = await self.collection.find_one({"_id": key})
            current = self._load(doc) if doc else None
            new = apply(current)
            if doc is None:
                if new is None:
                    return None
                try:
                    await self.collection.insert_one(self._document(new, 1, ("", 0.0)))
                    return new
                except DuplicateKeyError:
                    continue
            stored_lease = lease = _lease_of(doc)
            if release and lease[0] == self.owner:
                lease = ("", 0.0)
            if new is None:
                gone = await self.collection.delete_one({"_id": key, "rev": doc["rev"]})
                if gone.deleted_count:
                    return None
                continue
            if new == current and lease == stored_lease:
                return new
            done = await self.collection.replace_one(
                {"_id": key, "rev": doc["rev"]}, self._document(new, doc["rev"] + 1, lease))
            if done.matched_count:
                return new
        raise RuntimeError(f"{self.collection.name}/{key}: too many concurrent changes")

    async def change_many(self, changes: Mapping[str, Callable[[S | None], S | None]], *,
                          now: float, lease_s: float) -> dict[str, Leased[S]]:
        """``change`` for many keys in few round trips: one read, one insert of the new
        documents, one compare-and-swap each for the others (a key whose swap is lost goes
        through ``change``). A new document already due is written leased to this replica,
        and returned, so the caller sends it without looking it up again."""
        docs = {d["_id"]: d async for d in self.collection.find({"_id": {"$in": list(changes)}})}
        fresh: dict[str, S] = {}
        swaps = []
        for key, apply in changes.items():
            doc = docs.get(key)
            new = apply(self._load(doc) if doc else None)
            if doc is None:
                if new is not None:
                    fresh[key] = new
            elif new is not None:
                lease = _lease_of(doc)
                swaps.append((key, self.collection.replace_one(
                    {"_id": key, "rev": doc["rev"]}, self._document(new, doc["rev"] + 1, lease))))
            else:
                swaps.append((key, self.collection.delete_one({"_id": key, "rev": doc["rev"]})))
        leased: dict[str, Leased[S]] = {}
        documents = []
        for key, state in fresh.items():
            when = self._due(state)
            due_now = when is not None and when.timestamp() <= now
            documents.append(self._document(state, 1, (self.owner, now + lease_s) if due_now else ("", 0.0)))
            if due_now:
                leased[key] = Leased(key, state, 1, now + lease_s)
        lost = [key for key, result in zip([k for k, _ in swaps], await asyncio.gather(*(w for _, w in swaps)),
                                           strict=True)
                if not (getattr(result, "matched_count", 0) or getattr(result, "deleted_count", 0))]
        if documents:
            try:
                await self.collection.insert_many(documents, ordered=False)
            except BulkWriteError as error:
                clashed = {documents[e["index"]]["_id"] for e in error.details.get("writeErrors", ())}
                lost += list(clashed)
                for key in clashed:
                    leased.pop(key, None)
        for key in lost:  # another writer got there first: the slow, safe path
            await self.change(key, changes[key])
        return leased

    async def due_keys(self, now: float, limit: int = 100) -> list[str]:
        """Documents with work due and no live lease, earliest first."""
        cursor = self.collection.find({"due": {"$lte": now}}, {"_id": 1, "lease_until": 1}) \
            .sort("due", ASCENDING).limit(limit * 4)
        keys = [d["_id"] async for d in cursor if float(d.get("lease_until", 0.0)) <= now]
        return keys[:limit]

    async def next_due(self, now: float) -> float | None:
        """When the next document without a live lease has work (a leased one is being sent;
        if its sender dies, the regular poll finds it once the lease has run out)."""
        doc = await self.collection.find_one({"lease_until": {"$lte": now}}, {"due": 1}, sort=[("due", ASCENDING)])
        return None if doc is None or doc["due"] == NEVER else float(doc["due"])

    async def lease(self, key: str, now: float, seconds: float) -> Leased[S] | None:
        """Take the lease of ``key`` unless another replica holds a live one."""
        doc = await self.collection.find_one({"_id": key})
        if doc is None:
            return None
        if doc.get("lease_owner") not in ("", self.owner) and float(doc.get("lease_until", 0.0)) > now:
            return None
        state = self._load(doc)
        taken = await self.collection.replace_one(
            {"_id": key, "rev": doc["rev"]},
            self._document(state, doc["rev"] + 1, (self.owner, now + seconds)))
        return Leased(key, state, doc["rev"] + 1, now + seconds) if taken.matched_count else None


def _lease_of(doc: Mapping[str, Any]) -> tuple[str, float]:
    return doc.get("lease_owner", ""), float(doc.get("lease_until", 0.0))


def group_timers(collection: AsyncCollection, owner: str) -> TimerStore[GroupState]:
    return TimerStore(collection, load=GroupState.from_document, dump=GroupState.to_document,
                      due=lambda s: s.next_flush_at, owner=owner)


def escalation_timers(collection: AsyncCollection, owner: str) -> TimerStore[EscalationState]:
    return TimerStore(collection, load=EscalationState.from_document, dump=EscalationState.to_document,
                      due=lambda s: s.escalate_at, owner=owner)
