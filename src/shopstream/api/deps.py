"""Request dependencies: a pooled database connection, the caller's key, its role."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from shopstream.api.keys import Principal, Role, authenticate
from shopstream.api.ratelimit import RateLimiter

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")


def database(request: Request) -> ConnectionPool[psycopg.Connection[Any]]:
    """The pool; endpoints take a connection inside their own thread and give it back
    there. (A dependency holding a connection across threads can starve the thread pool:
    every thread waiting for a connection that requests waiting for a thread hold.)"""
    pool: ConnectionPool[psycopg.Connection[Any]] = request.app.state.pool
    return pool


Database = Annotated[ConnectionPool[psycopg.Connection[Any]], Depends(database)]


def principal(
    request: Request,
    db: Database,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The key's owner; 401 without a valid key, 429 over the key's rate."""
    key = bearer.credentials if bearer is not None else header
    who = None
    if key:
        with db.connection() as conn:
            who = authenticate(conn, key)
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid API key is required (Authorization: Bearer KEY, or X-API-Key: KEY)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.acquire(who.key_id)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "rate limit exceeded for this API key",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    request.state.principal = who
    return who


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting ``role`` and the roles above it; 403 for the others."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.role.allows(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this needs the {role.value} role or above"
            )
        return who

    return check


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
