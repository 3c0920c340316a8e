"""The FastAPI application: REST API under ``/api/v1``, dashboard at ``/``, ``/metrics``,
``/healthz`` and ``/readyz``."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import plotly
import psycopg
from anyio import to_thread
from fastapi import FastAPI, Request, Response, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopstream.api.deps import DOCS_PATH
from shopstream.api.keys import Role, authenticate
from shopstream.api.metrics import ApiMetrics
from shopstream.api.ratelimit import Rate, RateLimits
from shopstream.api.v1 import analytics, customers, fraud, keys, operations, quality
from shopstream.settings import Settings
from shopstream.store.migrate import pending_migrations

log = logging.getLogger(__name__)
DASHBOARD: Final = Path(__file__).resolve().parent.parent / "dashboard" / "static"
PLOTLY_JS: Final = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


class BodyLimit:
    """413 for request bodies over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._limit:
            await _too_large(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self._limit:
                raise _BodyTooLargeError
            return message

        try:
            await self._app(scope, counted, send)
        except _BodyTooLargeError:
            await _too_large(scope, receive, send)


class _BodyTooLargeError(Exception):
    pass


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"detail": "request body too large"}, status_code=413)
    await response(scope, receive, send)


# The dashboard loads scripts only from this server (its own and the vendored Plotly);
# Plotly sets inline styles and draws with data: images. The API's JSON needs nothing.
_DASHBOARD_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self';"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
# Great Expectations' Data Docs are generated pages with inline scripts and styles.
_QUALITY_DOCS_CSP: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# FastAPI's interactive docs pull their scripts from a CDN; they get no script policy.
_DOCS_PATHS: Final = ("/docs", "/redoc")
_COMMON_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Security headers on every response (set unless the response set its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = list(_COMMON_HEADERS)
        if not path.startswith(_DOCS_PATHS):
            policy = (
                _API_CSP
                if path.startswith("/api/")
                else _QUALITY_DOCS_CSP
                if path.startswith(DOCS_PATH)
                else _DASHBOARD_CSP
            )
            extra.append((b"content-security-policy", policy.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in extra if k not in present),
                ]
            await send(message)

        await self._app(scope, receive, with_headers)


def create_app(settings: Settings, database_url: str, ingest_url: str | None = None) -> FastAPI:
    """The app, reading through ``database_url`` (the API role) and replaying quarantine
    through ``ingest_url`` (the ingest role; None: ``database_url``)."""
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        database_url,
        min_size=1,
        max_size=settings.api_pool_size,
        kwargs={"application_name": "shopstream-api"},
        # A connection that died with a database restart is replaced before it is handed
        # out, instead of failing a request.
        check=ConnectionPool.check_connection,
        open=False,
    )
    metrics = ApiMetrics(pool)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Endpoints are sync: each runs in a worker thread. More threads than connections
        # only queue on the pool and fight over the GIL.
        to_thread.current_default_thread_limiter().total_tokens = settings.api_pool_size
        pool.open(wait=True, timeout=30)
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="ShopStream API",
        version="1.0.0",
        description="Real-time e-commerce analytics. Send an API key as "
        "`Authorization: Bearer KEY` or `X-API-Key: KEY`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database_url = database_url
    app.state.ingest_url = ingest_url or database_url
    app.state.pool = pool
    app.state.limits = RateLimits(
        per_key=Rate(settings.api_rate_per_second, settings.api_rate_burst),
        auth_failures=Rate(settings.api_auth_failures_per_second, settings.api_auth_failure_burst),
    )
    app.state.metrics = metrics

    for router in (
        analytics.router, customers.router, quality.router, fraud.router, keys.router,
        operations.router, operations.docs_router,
    ):  # fmt: skip
        app.include_router(router)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.requests.labels(template, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(_: Request, error: psycopg.OperationalError) -> JSONResponse:
        metrics.db_errors.inc()
        return JSONResponse(
            {"detail": "the database is unavailable"}, status.HTTP_503_SERVICE_UNAVAILABLE
        )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """The database answers and its schema is current."""
        try:
            with pool.connection(timeout=5) as conn:
                pending = [m.name for m in pending_migrations(conn)]
        except (psycopg.Error, TimeoutError) as error:
            log.warning("readiness check: the database is unavailable (%s)", error)
            return JSONResponse({"status": "database unavailable"}, 503)
        if pending:
            return JSONResponse({"status": "migrations pending", "pending": pending}, 503)
        return JSONResponse({"status": "ready"})

    if settings.metrics_access != "off":

        @app.get("/metrics", tags=["health"], include_in_schema=False)
        def prometheus(request: Request) -> Response:
            if settings.metrics_access == "key" and not _may_scrape(request, settings, pool):
                return JSONResponse(
                    {"detail": "an analyst or admin API key (or the metrics token) is required"},
                    status.HTTP_401_UNAUTHORIZED,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html")

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=DASHBOARD), name="static")
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app


def _may_scrape(
    request: Request, settings: Settings, pool: ConnectionPool[psycopg.Connection[Any]]
) -> bool:
    """The Bearer token is the metrics token, or an analyst (or admin) API key."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if expected is not None and hmac.compare_digest(token.encode(), expected.encode()):
        return True
    with pool.connection() as conn:
        who = authenticate(conn, token)
    return who is not None and who.role.allows(Role.ANALYST)


def app_from_environment() -> FastAPI:
    """The app of one ``serve --workers N`` process (the parent set the database URL)."""
    settings = Settings()
    if settings.database_url is None:
        raise RuntimeError("SHOPSTREAM_DATABASE_URL is not set")
    return create_app(
        settings,
        settings.api_database_url or settings.database_url,
        settings.ingest_database_url or settings.database_url,
    )
