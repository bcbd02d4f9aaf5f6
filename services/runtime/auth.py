"""The one API-key check of every Steward read or admin API: ``Authorization: Bearer <key>``
or ``X-API-Key``, 401 when none is sent (saying what to send), 403 when it is not accepted."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header, HTTPException
from pydantic import SecretStr


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
                raise HTTPException(401, "Authorization header must be 'Bearer <key>'",
                                    headers={"WWW-Authenticate": "Bearer"})
            presented = token
        if not presented:
            raise HTTPException(
                401, "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not any(hmac.compare_digest(presented, key) for key in accepted):
            raise HTTPException(403, "this API key is not accepted")

    return check
