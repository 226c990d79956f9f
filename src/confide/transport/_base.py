"""The node <-> hub channel interface: a connector that opens a framed, bidirectional connection.

Every transport (WebSocket, gRPC, HTTPS long-polling) carries the same
binary envelopes, so the hub's node session and the node's agent never know which one
they run over. The node always dials out; the hub never connects to a node. A transport's
server end takes the hub's session loop as a :data:`SessionLoop` and runs it once per
node connection, so no transport imports the hub.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeAlias

__all__ = ["Connection", "Connector", "SessionLoop", "TransportKind"]


class TransportKind(enum.StrEnum):
    """The node -> hub transports, in the default order of preference."""

    WEBSOCKET = "websocket"
    GRPC = "grpc"
    LONGPOLL = "longpoll"


class Connection(Protocol):
    """An open channel carrying whole frames in both directions."""

    async def send(self, frame: bytes) -> None:
        """Send one frame; :class:`TransportError` if the channel is gone."""
        ...

    async def recv(self) -> bytes:
        """Receive one frame; :class:`TransportError` when the channel closes."""
        ...

    async def close(self) -> None:
        """Close the channel (idempotent)."""
        ...


class Connector(Protocol):
    """Opens connections to the hub; ``name`` is logged so operators see which is used."""

    @property
    def name(self) -> str:
        """The transport's name, as operators see it in the logs."""
        ...

    async def connect(self) -> Connection:
        """Dial the hub; :class:`TransportError` naming the hub and the reason on failure."""
        ...


SessionLoop: TypeAlias = Callable[[Connection], Coroutine[Any, Any, None]]
"""What a server end runs for each node connection (the hub's ``NodeSessions.serve``)."""
