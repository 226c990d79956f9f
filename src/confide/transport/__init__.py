"""Node <-> hub channels behind one interface; every one carries the same envelopes.

- ``_base``: ``Connection`` and ``Connector`` protocols
- ``_websocket``: WebSocket (``websockets``)
- ``_grpc``: gRPC bidirectional stream, one generic bytes method (``grpc.aio``)
- ``_longpoll``: HTTPS long-polling (``httpx``)
- ``_fallback``: the configured transports tried in order
- ``_memory``: in-memory pair for tests
"""

from confide.transport._base import Connection, Connector, TransportKind
from confide.transport._memory import MemoryConnection, MemoryConnector, memory_pair
from confide.transport._websocket import WebSocketConnection, WebSocketConnector, websocket_url

__all__ = [
    "Connection",
    "Connector",
    "MemoryConnection",
    "MemoryConnector",
    "TransportKind",
    "WebSocketConnection",
    "WebSocketConnector",
    "memory_pair",
    "websocket_url",
]
