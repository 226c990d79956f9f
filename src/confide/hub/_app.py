"""``create_app(settings)``: the hub as a FastAPI application, with no side effects at import.

Startup opens (and migrates) the store, imports the provisioned seed, and starts the
audit writer and the mailbox purger; shutdown closes node sessions and drains the audit
log. Errors of the confide tree become JSON ``{"error", "message"}`` with a fitting
status; nothing else reaches the client, and no request or frame body is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse

from confide._errors import (
    AlgorithmError,
    AuthError,
    ConfideError,
    ConfigError,
    ConflictError,
    NotFoundError,
    WireError,
)
from confide._version import __version__
from confide.hub._api import router
from confide.hub._audit import AuditLog
from confide.hub._directory import Directory
from confide.hub._seed import load_seed
from confide.hub._service import HubService
from confide.hub._sessions import NodeSessions
from confide.hub._settings import HubSettings
from confide.hub._store import Store
from confide.hub._watch import TaskWatch
from confide.transport import WEBSOCKET_PATH, LongPollHub, NodeWebSocket, longpoll_router

if TYPE_CHECKING:
    from confide.transport import GrpcNodeServer

__all__ = ["create_app", "preflight"]

log = logging.getLogger("confide.hub")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

_STATUS: tuple[tuple[type[ConfideError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (AuthError, 403),
    (WireError, 400),
    (AlgorithmError, 400),
    (ConfigError, 400),
)


def create_app(settings: HubSettings, store: Store | None = None) -> FastAPI:
    """Build the hub application; the store defaults to SQL at ``settings.database_url``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_store = store if store is not None else _sql_store(settings.database_url)
        await the_store.initialise()
        if settings.seed_file is not None:
            await the_store.seed(load_seed(settings.seed_file))
        audit = AuditLog(the_store)
        audit.start()
        sessions = _serve(app, settings, the_store, audit)
        grpc_server = _grpc_server(settings, sessions)
        if grpc_server is not None:
            app.state.grpc_port = await grpc_server.start()
        purger = asyncio.create_task(_purge_mailbox(the_store), name="confide-purge")
        log.info("hub %s ready (store %s)", __version__, settings.database_url.split("@")[-1])
        try:
            yield
        finally:
            purger.cancel()
            await app.state.longpoll.close()
            if grpc_server is not None:
                await grpc_server.stop()
            await sessions.close_all()
            await audit.close()
            await the_store.close()

    app = FastAPI(title="confide hub", version=__version__, lifespan=lifespan, docs_url="/docs")
    app.include_router(router)
    app.include_router(longpoll_router())

    @app.exception_handler(ConfideError)
    async def _confide_error(request: Request, exc: ConfideError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        if status == 403 and "credentials" in str(exc):
            status = 401
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.websocket(WEBSOCKET_PATH)
    async def node_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await app.state.sessions.serve(NodeWebSocket(websocket))

    app.add_middleware(_AuditMiddleware)
    return app


def _serve(app: FastAPI, settings: HubSettings, store: Store, audit: AuditLog) -> NodeSessions:
    """The hub's parts over ``store``, on ``app.state``: directory, node sessions, tasks, long-polling."""
    watch = TaskWatch()
    directory = Directory(store)
    sessions = NodeSessions(
        store,
        directory,
        audit,
        watch,
        settings.heartbeat_s,
        settings.mailbox_ttl_s,
        settings.aggregation_stage_timeout_s,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.directory = directory
    app.state.audit = audit
    app.state.sessions = sessions
    app.state.service = HubService(store, directory, sessions, watch)
    app.state.longpoll = LongPollHub(sessions.serve, hold_s=settings.max_wait_s)
    return sessions


def _grpc_server(settings: HubSettings, sessions: NodeSessions) -> GrpcNodeServer | None:
    """The gRPC listener, when ``grpc_port`` is set (grpc is imported only then)."""
    if settings.grpc_port is None:
        return None
    from confide.transport import GrpcNodeServer

    tls = None
    if settings.tls and settings.tls_cert is not None and settings.tls_key is not None:
        tls = (settings.tls_cert.read_bytes(), settings.tls_key.read_bytes())
    return GrpcNodeServer(sessions.serve, settings.host, settings.grpc_port, tls)


async def preflight(settings: HubSettings) -> None:
    """Open, migrate and seed the configured store once, raising a clear error on failure."""
    store = _sql_store(settings.database_url)
    try:
        await store.initialise()
        if settings.seed_file is not None:
            await store.seed(load_seed(settings.seed_file))
    finally:
        await store.close()


def _sql_store(url: str) -> Store:
    from confide.hub._sqlstore import SqlStore

    return SqlStore(url)


async def _purge_mailbox(store: Store) -> None:
    while True:
        await asyncio.sleep(60)
        with contextlib.suppress(ConfideError):
            await store.purge_expired(time.time_ns() // 1_000_000)


class _AuditMiddleware:
    """Records every HTTP call (actor, method and path, status) in the audit log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        status = [500]

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            audit: AuditLog | None = getattr(scope["app"].state, "audit", None)
            if audit is not None:
                actor = state.get("actor", "anonymous") if isinstance(state, dict) else "anonymous"
                audit.record(actor, scope["method"], scope["path"], str(status[0]))
