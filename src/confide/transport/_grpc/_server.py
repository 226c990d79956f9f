"""The hub's end of the gRPC transport: each node's Relay stream runs the hub's session loop.

A generic handler (no generated code) takes raw bytes both ways, one envelope frame per
message, and hands every stream to the session loop it was given (the hub passes
``NodeSessions.serve``, the same loop its WebSocket endpoint runs); the RPC ends when
that returns or when the hub closes the connection. The hub only listens: nodes always
dial in. The node's end is :mod:`confide.transport._grpc._client`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import grpc.aio

from confide._errors import TransportError
from confide.transport._base import SessionLoop
from confide.transport._grpc._framing import GRPC_SERVICE, SERVER_OPTIONS
from confide.transport._grpc._stream import GrpcStream

__all__ = ["GrpcNodeServer"]

# Only the hub runs this end, so it logs under the hub's name (operators filter on it).
log = logging.getLogger("confide.hub.grpc")

SHUTDOWN_SESSIONS_S = 2.0


class NodeStream(GrpcStream):
    """The hub's end of one node's stream, over the RPC's servicer context."""

    def __init__(self, context: Any) -> None:
        super().__init__(context.read, context.write)
        self._peer = str(context.peer())

    def where(self) -> str:
        return f"node connection {self._peer}"

    async def close(self) -> None:
        # The RPC handler waits on this and returns, which ends the RPC with status OK:
        # the node reads end-of-stream after every frame already written.
        self.end("closed by the hub")


class GrpcNodeServer:
    """Serves node streams on ``host:port`` (TLS with ``tls=(cert_pem, key_pem)``).

    Parameters
    ----------
    serve
        The session loop run for each node connection; returns when the node is gone.
    host, port
        Where to listen; port 0 picks a free port, returned by :meth:`start`.
    tls
        The hub's certificate (chain) and private key in PEM; ``None`` listens in clear text.
    """

    def __init__(
        self,
        serve: SessionLoop,
        host: str,
        port: int,
        tls: tuple[bytes, bytes] | None = None,
    ) -> None:
        self._serve = serve
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._tls = tls
        self._server: grpc.aio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    async def start(self) -> int:
        """Start listening; returns the bound port."""
        if self._server is not None:
            raise TransportError(f"the gRPC listener on {self.address} is already running")
        server = grpc.aio.server(options=list(SERVER_OPTIONS))
        handler = grpc.stream_stream_rpc_method_handler(self._connect)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(GRPC_SERVICE, {"Connect": handler}),)
        )
        try:
            if self._tls is None:
                port = server.add_insecure_port(self.address)
            else:
                cert_pem, key_pem = self._tls
                credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
                port = server.add_secure_port(self.address, credentials)
        except RuntimeError:  # grpcio raises where older versions returned port 0
            port = 0
        if port == 0:
            await server.stop(None)
            raise TransportError(
                f"cannot listen for gRPC on {self.address}: the port is in use "
                "or the address is not one of this machine's"
            )
        await server.start()
        self._server = server
        self.port = port
        log.info("gRPC node listener on %s (%s)", self.address, "TLS" if self._tls else "no TLS")
        return int(port)

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop listening, end every node stream and wait briefly for their sessions."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.stop(grace_s)
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=SHUTDOWN_SESSIONS_S)
        for session in list(self._sessions):
            session.cancel()

    async def _connect(self, request_iterator: Any, context: Any) -> None:
        del request_iterator  # read through the context instead
        conn = NodeStream(context)
        session = asyncio.create_task(self._serve(conn))
        self._sessions.add(session)
        session.add_done_callback(self._session_done)
        try:
            await asyncio.wait((session, conn.ending), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The node cancelled the RPC, its connection died or the server is stopping.
            # The session is not cancelled mid-step: it sees TransportError at its next
            # recv or send, like any lost connection, and cleans up itself.
            conn.end("the node's gRPC stream was cancelled")
            raise
        finally:
            conn.end("the gRPC stream is over")
        if session.done() and not session.cancelled() and _unexpected(session.exception()):
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details("the hub failed while serving this node; see the hub's log")

    def _session_done(self, session: asyncio.Task[None]) -> None:
        self._sessions.discard(session)
        error = None if session.cancelled() else session.exception()
        if _unexpected(error):
            log.error("a node session over gRPC failed", exc_info=error)


def _unexpected(error: BaseException | None) -> bool:
    """Whether a session ended by something other than its connection going away."""
    return error is not None and not isinstance(error, TransportError)
