"""The node <-> hub channel interface: a connector that opens a framed, bidirectional connection.

Every transport (WebSocket now; gRPC and HTTPS long-polling later) carries the same
binary envelopes, so the hub's node session and the node's agent never know which one
they run over. The node always dials out; the hub never connects to a node.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Connection", "Connector"]


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

    name: str

    async def connect(self) -> Connection:
        """Dial the hub; :class:`TransportError` naming the hub and the reason on failure."""
        ...
