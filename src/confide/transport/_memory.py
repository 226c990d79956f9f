"""In-memory transport for tests: a pair of queues standing in for a socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from confide._errors import TransportError

__all__ = ["MemoryConnection", "MemoryConnector", "memory_pair"]

_CLOSED = b""


class MemoryConnection:
    """One end of an in-memory channel."""

    def __init__(self, inbox: asyncio.Queue[bytes], outbox: asyncio.Queue[bytes]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False

    async def send(self, frame: bytes) -> None:
        if self._closed:
            raise TransportError("in-memory connection is closed")
        await self._outbox.put(frame)

    async def recv(self) -> bytes:
        frame = await self._inbox.get()
        if frame == _CLOSED:
            self._closed = True
            raise TransportError("in-memory connection closed by the other end")
        return frame

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._outbox.put(_CLOSED)


def memory_pair() -> tuple[MemoryConnection, MemoryConnection]:
    """Two connected ends: what one sends the other receives."""
    a: asyncio.Queue[bytes] = asyncio.Queue()
    b: asyncio.Queue[bytes] = asyncio.Queue()
    return MemoryConnection(a, b), MemoryConnection(b, a)


class MemoryConnector:
    """Connects a node straight to a hub-side handler running in the same event loop."""

    name = "memory"

    def __init__(self, serve: Callable[[MemoryConnection], Coroutine[Any, Any, None]]) -> None:
        self._serve = serve
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> MemoryConnection:
        node_end, hub_end = memory_pair()
        task = asyncio.create_task(self._serve(hub_end))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return node_end
