"""FastAPI dependencies, as Annotated types the routes declare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Header, Request

from session_api.auth import AuthedKey, authenticate
from session_api.ratelimit import WindowState
from session_api.services import Services


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request.
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(get_services)]


@dataclass(frozen=True, slots=True)
class Caller:
    key: AuthedKey
    window: WindowState


async def get_caller(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """Authenticate the key (401/403/503), then count the request against its rate limit."""
    key = await authenticate(services.db, authorization, cache=services.key_cache)
    window = await services.limiter.hit(key.id, key.rpm)
    return Caller(key=key, window=window)


CallerDep = Annotated[Caller, Depends(get_caller)]
