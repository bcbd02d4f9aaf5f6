"""The read API: KPIs per community and day, behind API keys when any are configured."""

import hmac
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import SecretStr

from services.metrics.kpis.daily import daily_kpis
from services.metrics.store import MetricsStore

MAX_RANGE_DAYS = 366


def require_api_key(keys: list[SecretStr]):
    accepted = [k.get_secret_value() for k in keys]

    async def check(
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> None:
        if not accepted:
            return
        presented = x_api_key
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise HTTPException(401, "Authorization header must be 'Bearer <key>'")
            presented = token
        if not presented:
            raise HTTPException(
                401, "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not any(hmac.compare_digest(presented, key) for key in accepted):
            raise HTTPException(403, "this API key is not accepted")

    return check


def build_router(store: MetricsStore, keys: list[SecretStr]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_key(keys))])

    @router.get("/communities/{community_id}/kpis", summary="Daily KPIs of one community")
    async def kpis(
        community_id: str,
        from_: Annotated[date | None, Query(alias="from", description="First UTC day (default: 6 days before 'to')")] = None,
        to: Annotated[date | None, Query(description="Last UTC day, inclusive (default: today)")] = None,
    ) -> dict:
        last = to or datetime.now(UTC).date()
        first = from_ or last - timedelta(days=6)
        if first > last:
            raise HTTPException(400, f"'from' ({first}) is after 'to' ({last})")
        if (last - first).days + 1 > MAX_RANGE_DAYS:
            raise HTTPException(400, f"a range covers at most {MAX_RANGE_DAYS} days")
        activity = await store.activity_facts(community_id, first, last)
        verdicts = await store.verdict_facts(community_id, first, last)
        return {
            "community_id": community_id,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "days": [row.as_dict() for row in daily_kpis(first, last, activity, verdicts)],
        }

    return router
