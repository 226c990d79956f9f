"""Node <-> hub channels behind one interface; every one carries the same envelopes.

General layout, in dependency order (each module imports only those above it). Each
transport is a subpackage with the node's end (client) and the hub's end (server) side by
side, sharing one ``_framing`` module: the paths, frame format and limits both ends obey::

    _base        Connection, Connector, TransportKind; SessionLoop, what a server end runs
    _memory      an in-memory pair and MemoryConnector, for tests
    _fallback    FallbackConnector: the configured transports tried in order
    _websocket/  _framing   WEBSOCKET_PATH, the frame limit
                 _client    WebSocketConnector                               (websockets)
                 _server    NodeWebSocket, over Starlette's WebSocket           (starlette)
    _grpc/       _framing   the Relay method, frame limit, keepalive: channel and server options
                 _stream    GrpcStream, either end of the stream as a Connection     (grpc)
                 _client    GrpcConnector: proxy and TLS choices                       (grpc)
                 _server    GrpcNodeServer: a listener running the session loop        (grpc)
    _longpoll/   _framing   the requests, u32-length-prefixed bodies, the limits
                 _client    LongPollConnector                                         (httpx)
                 _session   LongPollSession, LongPollHub: sessions and their idle sweep
                 _routes    longpoll_router(): the /lp endpoints                    (fastapi)

The hub mounts the server ends and hands each its session loop; no server end imports the
hub. ``websockets`` loads with this package; grpc, httpx and FastAPI/Starlette only when a
name that needs them is first used, so ``from confide.transport import Connection`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from confide.transport._base import Connection, Connector, SessionLoop, TransportKind
from confide.transport._fallback import FallbackConnector
from confide.transport._memory import MemoryConnection, MemoryConnector, memory_pair
from confide.transport._websocket._client import WebSocketConnection, WebSocketConnector, websocket_url
from confide.transport._websocket._framing import WEBSOCKET_PATH

if TYPE_CHECKING:
    from confide.transport._grpc._client import GrpcConnection, GrpcConnector
    from confide.transport._grpc._server import GrpcNodeServer
    from confide.transport._longpoll._client import LongPollConnection, LongPollConnector
    from confide.transport._longpoll._routes import longpoll_router
    from confide.transport._longpoll._session import LongPollHub
    from confide.transport._websocket._server import NodeWebSocket

_HOME = {
    "_grpc._client": ("GrpcConnection", "GrpcConnector"),
    "_grpc._server": ("GrpcNodeServer",),
    "_longpoll._client": ("LongPollConnection", "LongPollConnector"),
    "_longpoll._routes": ("longpoll_router",),
    "_longpoll._session": ("LongPollHub",),
    "_websocket._server": ("NodeWebSocket",),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = [
    "WEBSOCKET_PATH",
    "Connection",
    "Connector",
    "FallbackConnector",
    "GrpcConnection",
    "GrpcConnector",
    "GrpcNodeServer",
    "LongPollConnection",
    "LongPollConnector",
    "LongPollHub",
    "MemoryConnection",
    "MemoryConnector",
    "NodeWebSocket",
    "SessionLoop",
    "TransportKind",
    "WebSocketConnection",
    "WebSocketConnector",
    "longpoll_router",
    "memory_pair",
    "websocket_url",
]


def __getattr__(name: str) -> object:
    # Import the implementing module on first use, so that a node on WebSocket never loads
    # grpc, and nothing but the hub loads FastAPI.
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'confide.transport' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"confide.transport.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
