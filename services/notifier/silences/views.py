"""The silences API: create, list, read and expire silences (Alertmanager-style).

The notifier mounts this router behind its API-key dependency; it adds no auth itself.
Status codes: 201 created; 422 a malformed body (bad matcher syntax, both or neither of
``ends_at``/``duration``, ``ends_at`` not after ``starts_at``, matchers that match every
incident, unknown fields); 400 a well-formed silence that would not end in the future;
404 an unknown silence id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from services.notifier.silences.models import (
    Silence,
    SilenceIn,
    SilenceList,
    SilenceState,
    SilenceWindowError,
)
from services.notifier.silences.store import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    SilenceStore,
)

__all__ = ["build_silences_router"]

SilenceId = Annotated[
    str, Path(min_length=1, max_length=64, description="The silence's id (32 hex digits).")
]
NOT_FOUND = {404: {"description": "No silence has this id"}}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_silences_router(
    store: SilenceStore, clock: Callable[[], datetime] | None = None
) -> APIRouter:
    """``POST/GET /silences``, ``GET/DELETE /silences/{id}``; ``clock`` gives "now" (UTC)."""
    now = clock or _utc_now
    router = APIRouter(tags=["silences"])

    def missing(silence_id: str) -> HTTPException:
        return HTTPException(404, f"no silence with id {silence_id!r}")

    @router.post(
        "/silences",
        status_code=201,
        response_model=Silence,
        summary="Create a silence",
        description=(
            "Mute incidents whose labels (community, severity, category, channel, platform, "
            "rule) match every matcher, from starts_at (default now) until ends_at, or for "
            "duration (e.g. \"1h\"). Matchers use Alertmanager syntax: label=\"v\", "
            "label!=\"v\", label=~\"regex\", label!~\"regex\"; regexes are fully anchored and a "
            "missing label is the empty string. At least one matcher must not match the "
            "empty string, so a silence cannot mute everything."
        ),
        responses={
            400: {"description": "The silence would not end in the future"},
            422: {"description": "Malformed: bad matcher, window, or match-all matchers"},
        },
    )
    async def create_silence(body: SilenceIn) -> Silence:
        try:
            return await store.create(body, now())
        except SilenceWindowError as error:
            raise HTTPException(400, str(error)) from None

    @router.get(
        "/silences",
        response_model=SilenceList,
        summary="List silences",
        description=(
            "Silences in a state (pending, active or expired, as of now), or all of them; "
            "community=c1 keeps those with the matcher community=\"c1\". Active ones "
            "soonest-ending first, pending ones soonest-starting first, expired ones "
            "latest-ended first, all of them newest first."
        ),
    )
    async def list_silences(
        state: Annotated[
            SilenceState | None, Query(description="pending, active or expired")
        ] = None,
        community: Annotated[
            str | None,
            Query(min_length=1, max_length=256, description='Only silences with community="…"'),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
    ) -> SilenceList:
        found = await store.list(state=state, community=community, now=now(), limit=limit)
        return SilenceList(silences=found)

    @router.get(
        "/silences/{silence_id}",
        response_model=Silence,
        summary="Read a silence",
        description="One silence, with its state as of now.",
        responses=NOT_FOUND,
    )
    async def get_silence(silence_id: SilenceId) -> Silence:
        silence = await store.get(silence_id, now())
        if silence is None:
            raise missing(silence_id)
        return silence

    @router.delete(
        "/silences/{silence_id}",
        response_model=Silence,
        summary="Expire a silence",
        description=(
            "Ends the silence now (a pending one never starts) and returns it, expired. "
            "The record is kept; expiring an expired silence changes nothing."
        ),
        responses=NOT_FOUND,
    )
    async def expire_silence(silence_id: SilenceId) -> Silence:
        silence = await store.expire(silence_id, now())
        if silence is None:
            raise missing(silence_id)
        return silence

    return router
