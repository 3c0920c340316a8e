"""Request dependencies: a pooled database connection, the caller's key, its role."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from shopstream.api.keys import Principal, Role, authenticate
from shopstream.api.ratelimit import RateLimits

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")
# Set only for the Data Docs pages (path /quality-docs, HttpOnly, SameSite=Strict), which a
# browser opens as pages and so cannot send a header for.
DOCS_COOKIE = "shopstream_docs"
DOCS_PATH = "/quality-docs"
_cookie = APIKeyCookie(name=DOCS_COOKIE, auto_error=False, description="Data Docs pages only")


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
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    """The key's owner; 401 without a valid key, 429 over the key's rate or after too many
    failed keys from the client's address (refused before any key lookup)."""
    key = bearer.credentials if bearer is not None else header or cookie
    client = request.client.host if request.client is not None else "unknown"
    limits: RateLimits = request.app.state.limits
    who = None
    with db.connection() as conn:
        refused_for = limits.wait_after_failures(conn, client) if key else 0.0
        if key and not refused_for:
            who = authenticate(conn, key)
            if who is None:
                limits.count_failure(conn, client)
        wait = limits.take_for_key(conn, who.key_id) if who is not None else 0.0
    if refused_for:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed authentications from this address",
            headers={"Retry-After": str(math.ceil(refused_for))},
        )
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid API key is required (Authorization: Bearer KEY, or X-API-Key: KEY)",
            headers={"WWW-Authenticate": "Bearer"},
        )
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


def reporting_currency(request: Request) -> str | None:
    """The currency revenue is converted into (SHOPSTREAM_REPORTING_CURRENCY), if any."""
    code: str | None = request.app.state.settings.reporting_currency
    return code


ReportingCurrency = Annotated[str | None, Depends(reporting_currency)]
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Analyst = Annotated[Principal, Depends(require(Role.ANALYST))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
