"""Identity links and profiles in MongoDB.

- ``metrics_identities``: one document per person, ``{_id: "<community>|<person_id>",
  community_id, person_id, members: [{platform, member_id}], keys: ["<platform>|<member_id>"],
  v, created_at, updated_at}``. A unique index on (community_id, keys) lets MongoDB refuse a
  second person holding an id. nx-27017 (the local server) does not enforce unique
  multikey indexes, so every write also checks for an owner before and after it, and undoes
  itself when it lost a race. ``v`` makes each change a compare-and-set: a person edited
  concurrently is read again, and the 50-id bound holds.
- ``metrics_profiles``: one document per (community, platform, member) with its normalized
  username and verified email, indexed by (community_id, value) to find shared values.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.activity import MemberActivity
from services.metrics.identity.links import (
    MAX_GROUP,
    MemberKey,
    Profile,
    Suggestion,
    profile_of,
    suggest,
)
from services.metrics.identity.models import MAX_IDS_PER_PERSON

ATTEMPTS = 3  # compare-and-set retries before telling the caller to try again
IN_CHUNK = 500  # ids per $in query


class IdentityError(Exception):
    """A link request the store refuses; the message says why, for the API caller."""


class InvalidLink(IdentityError):
    pass


class AlreadyLinked(IdentityError):
    def __init__(self, member: MemberKey, person_id: str) -> None:
        super().__init__(f"{member[0]} member {member[1]!r} already belongs to person {person_id!r}: "
                         "unlink it from that person first")
        self.member, self.person_id = member, person_id


class UnknownPerson(IdentityError):
    pass


class UnknownMember(IdentityError):
    pass


class ConcurrentChange(IdentityError):
    pass


@dataclass(frozen=True)
class StoredPerson:
    community_id: str
    person_id: str
    members: tuple[MemberKey, ...]
    version: int


def member_key(member: MemberKey) -> str:
    return f"{member[0]}|{member[1]}"  # platform names hold no '|', so the first one splits


def split_key(key: str) -> MemberKey:
    platform, _, member_id = key.partition("|")
    return (platform, member_id)


def profile_id(community_id: str, member: MemberKey) -> str:
    # JSON, not a separator: community and member ids may hold any character.
    return json.dumps([community_id, *member], separators=(",", ":"))


def check_ids(members: list[MemberKey], *, creating: bool) -> None:
    seen, duplicates = set(), set()
    for member in members:
        (duplicates if member in seen else seen).add(member)
    if duplicates:
        raise InvalidLink("duplicate ids: " + ", ".join(member_key(m) for m in sorted(duplicates)))
    if len(members) > MAX_IDS_PER_PERSON:
        raise InvalidLink(f"a person holds at most {MAX_IDS_PER_PERSON} ids, got {len(members)}")
    if creating and len(members) < 2:
        raise InvalidLink("a new person links at least 2 ids; to add one id, give the person_id")
    if not members:
        raise InvalidLink("give at least one id to add")


def _person(doc: dict) -> StoredPerson:
    return StoredPerson(doc["community_id"], doc["person_id"],
                        tuple((m["platform"], m["member_id"]) for m in doc["members"]), doc["v"])


class IdentityStore:
    def __init__(self, db: AsyncDatabase, *, cache_size: int = 100_000) -> None:
        self.persons = db["metrics_identities"]
        self.profiles = db["metrics_profiles"]
        self.cache_size = cache_size
        # profile id -> (username, email) as last written or read: steady traffic writes nothing.
        self._written: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()

    async def create_indexes(self) -> None:
        await self.persons.create_index([("community_id", ASCENDING), ("keys", ASCENDING)], unique=True,
                                        name="one_person_per_member")
        await self.persons.create_index([("community_id", ASCENDING), ("person_id", ASCENDING)])
        await self.profiles.create_index([("community_id", ASCENDING), ("email", ASCENDING)])
        await self.profiles.create_index([("community_id", ASCENDING), ("username", ASCENDING)])

    # --- links ----------------------------------------------------------------------------

    async def link(self, community_id: str, members: list[MemberKey], person_id: str | None = None) -> tuple[StoredPerson, bool]:
        """Link ids into a new person, or add them to ``person_id``: (the person, whether it is new)."""
        check_ids(members, creating=person_id is None)
        if person_id is None:
            return await self._create(community_id, members), True
        return await self._add(community_id, person_id, members), False

    async def _create(self, community_id: str, members: list[MemberKey]) -> StoredPerson:
        keys = [member_key(m) for m in members]
        await self._refuse_owned(community_id, keys, None)
        person_id = uuid4().hex
        now = datetime.now(UTC)
        doc_id = f"{community_id}|{person_id}"
        try:
            await self.persons.insert_one({
                "_id": doc_id, "community_id": community_id, "person_id": person_id,
                "members": [{"platform": p, "member_id": m} for p, m in members], "keys": keys,
                "v": 1, "created_at": now, "updated_at": now})
        except DuplicateKeyError:
            await self._refuse_owned(community_id, keys, None)
            raise ConcurrentChange("these ids changed while linking: try again") from None
        try:
            await self._refuse_owned(community_id, keys, person_id)
        except AlreadyLinked:
            await self.persons.delete_one({"_id": doc_id, "v": 1})
            raise
        return StoredPerson(community_id, person_id, tuple(members), 1)

    async def _add(self, community_id: str, person_id: str, members: list[MemberKey]) -> StoredPerson:
        doc_id = f"{community_id}|{person_id}"
        for _ in range(ATTEMPTS):
            doc = await self.persons.find_one({"_id": doc_id})
            if doc is None:
                raise UnknownPerson(f"no person {person_id!r} in community {community_id!r}")
            person = _person(doc)
            new = [m for m in members if m not in person.members]
            if not new:
                return person  # linking again what is linked changes nothing
            if len(person.members) + len(new) > MAX_IDS_PER_PERSON:
                raise InvalidLink(f"person {person_id!r} holds {len(person.members)} ids; adding {len(new)} "
                                  f"would pass the limit of {MAX_IDS_PER_PERSON}")
            new_keys = [member_key(m) for m in new]
            await self._refuse_owned(community_id, new_keys, person_id)
            merged = [*person.members, *new]
            try:
                written = await self._replace_members(doc_id, person.version, merged)
            except DuplicateKeyError:
                await self._refuse_owned(community_id, new_keys, person_id)
                raise ConcurrentChange("these ids changed while linking: try again") from None
            if not written:
                continue  # someone else changed this person: read it again
            try:
                await self._refuse_owned(community_id, new_keys, person_id)
            except AlreadyLinked:
                await self._replace_members(doc_id, person.version + 1, list(person.members))
                raise
            return StoredPerson(community_id, person_id, tuple(merged), person.version + 1)
        raise ConcurrentChange(f"person {person_id!r} keeps changing: try again")

    async def unlink(self, community_id: str, person_id: str, member: MemberKey) -> StoredPerson | None:
        """Remove one id from a person: the person left, or None when it had no other id."""
        doc_id = f"{community_id}|{person_id}"
        for _ in range(ATTEMPTS):
            doc = await self.persons.find_one({"_id": doc_id})
            if doc is None:
                raise UnknownPerson(f"no person {person_id!r} in community {community_id!r}")
            person = _person(doc)
            if member not in person.members:
                raise UnknownMember(f"{member[0]} member {member[1]!r} is not linked to person {person_id!r}")
            remaining = [m for m in person.members if m != member]
            if not remaining:
                # Deleted, not emptied: every empty array is the same key in a unique index.
                if (await self.persons.delete_one({"_id": doc_id, "v": person.version})).deleted_count:
                    return None
            elif await self._replace_members(doc_id, person.version, remaining):
                return StoredPerson(community_id, person_id, tuple(remaining), person.version + 1)
        raise ConcurrentChange(f"person {person_id!r} keeps changing: try again")

    async def _replace_members(self, doc_id: str, version: int, members: list[MemberKey]) -> bool:
        result = await self.persons.update_one(
            {"_id": doc_id, "v": version},
            {"$set": {"members": [{"platform": p, "member_id": m} for p, m in members],
                      "keys": [member_key(m) for m in members], "updated_at": datetime.now(UTC)},
             "$inc": {"v": 1}})
        return result.matched_count == 1

    async def _refuse_owned(self, community_id: str, keys: list[str], allowed: str | None) -> None:
        """Raise AlreadyLinked when a person other than ``allowed`` holds one of ``keys``."""
        wanted = set(keys)
        cursor = self.persons.find({"community_id": community_id, "keys": {"$in": keys}}, {"person_id": 1, "keys": 1})
        async for doc in cursor:
            if doc["person_id"] != allowed:
                taken = sorted(wanted.intersection(doc["keys"]))
                raise AlreadyLinked(split_key(taken[0]), doc["person_id"])

    async def get_person(self, community_id: str, person_id: str) -> StoredPerson | None:
        doc = await self.persons.find_one({"_id": f"{community_id}|{person_id}"})
        return _person(doc) if doc else None

    async def person_of(self, community_id: str, member: MemberKey) -> str | None:
        # $in rather than equality: nx-27017 matches an array element only through $in.
        doc = await self.persons.find_one({"community_id": community_id, "keys": {"$in": [member_key(member)]}},
                                          {"person_id": 1})
        return doc["person_id"] if doc else None

    async def list_persons(self, community_id: str, limit: int, after: str | None = None) -> tuple[list[StoredPerson], str | None]:
        """A page of persons ordered by id, and the id to continue after (None: the last page)."""
        query: dict = {"community_id": community_id}
        if after is not None:
            query["person_id"] = {"$gt": after}
        docs = await self.persons.find(query).sort("person_id", ASCENDING).limit(limit + 1).to_list()
        page = [_person(d) for d in docs[:limit]]
        return page, (page[-1].person_id if len(docs) > limit else None)

    async def all_persons(self, community_id: str) -> AsyncIterator[StoredPerson]:
        async for doc in self.persons.find({"community_id": community_id}):
            yield _person(doc)

    async def linked(self, community_id: str, members: Iterable[MemberKey]) -> dict[MemberKey, str]:
        """member -> the person it belongs to, for those of ``members`` that belong to one."""
        wanted = {member_key(m) for m in members}
        ordered = sorted(wanted)
        out: dict[MemberKey, str] = {}
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start:start + IN_CHUNK]
            async for doc in self.persons.find({"community_id": community_id, "keys": {"$in": chunk}},
                                               {"person_id": 1, "keys": 1}):
                out.update({split_key(k): doc["person_id"] for k in doc["keys"] if k in wanted})
        return out

    # --- profiles -------------------------------------------------------------------------

    async def observe(self, events: Iterable[MemberActivity]) -> int:
        """Record the identity hints of a batch: one bulk write of the profiles that changed."""
        batch: dict[str, tuple[str, Profile]] = {}
        for event in sorted(events, key=lambda e: e.occurred_at):  # the latest statement wins
            profile = profile_of(event)
            if profile is None:
                continue
            doc_id = profile_id(event.community_id, profile.key)
            earlier = batch.get(doc_id)
            batch[doc_id] = (event.community_id, profile.over(earlier[1] if earlier else None))
        if not batch:
            return 0
        known = {doc_id: self._written[doc_id] for doc_id in batch if doc_id in self._written}
        unknown = [doc_id for doc_id in batch if doc_id not in known]
        if unknown:  # after a restart: read once rather than write every member again
            async for doc in self.profiles.find({"_id": {"$in": unknown}}, {"username": 1, "email": 1}):
                known[doc["_id"]] = (doc.get("username"), doc.get("email"))
        now = datetime.now(UTC)
        ops, after = [], {}
        for doc_id, (community_id, profile) in batch.items():
            stored = known.get(doc_id, (None, None))
            merged = profile.over(Profile(profile.platform, profile.member_id, *stored))
            after[doc_id] = merged.values
            if merged.values != stored:
                ops.append(UpdateOne({"_id": doc_id}, {"$set": {
                    "community_id": community_id, "platform": merged.platform, "member_id": merged.member_id,
                    "username": merged.username, "email": merged.email, "updated_at": now}}, upsert=True))
        if ops:
            await self.profiles.bulk_write(ops, ordered=False)
        for doc_id, values in after.items():  # only once written: a failed batch is retried in full
            self._written[doc_id] = values
            self._written.move_to_end(doc_id)
        while len(self._written) > self.cache_size:
            self._written.popitem(last=False)
        return len(ops)

    async def suggestions(self, community_id: str, limit: int = 100) -> list[Suggestion]:
        candidates: list[Profile] = []
        for field in ("email", "username"):
            async for group in self._shared(community_id, field):
                candidates.extend(group)
        linked = await self.linked(community_id, {p.key for p in candidates})
        return suggest(candidates, linked)[:limit]

    async def _shared(self, community_id: str, field: str) -> AsyncIterator[list[Profile]]:
        """Groups of 2..MAX_GROUP profiles sharing a value of ``field``, streamed in value order."""
        cursor = self.profiles.find({"community_id": community_id, field: {"$type": "string"}},
                                    {"platform": 1, "member_id": 1, field: 1}).sort(field, ASCENDING)
        value, group = None, []
        async for doc in cursor:
            if doc[field] != value:
                if 2 <= len(group) <= MAX_GROUP:
                    yield group
                value, group = doc[field], []
            if len(group) <= MAX_GROUP:  # past the bound the group is dropped anyway
                group.append(Profile(doc["platform"], doc["member_id"], **{field: value}))
        if 2 <= len(group) <= MAX_GROUP:
            yield group
