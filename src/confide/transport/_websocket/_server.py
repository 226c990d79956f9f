"""The hub's end of the WebSocket transport: a node's accepted Starlette ``WebSocket`` as a ``Connection``.

The hub mounts the endpoint at :data:`~confide.transport._websocket._framing.WEBSOCKET_PATH`,
accepts the socket and hands :class:`NodeWebSocket` to its session loop.
"""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from confide._errors import TransportError

__all__ = ["NodeWebSocket"]


class NodeWebSocket:
    """Adapts an accepted Starlette (FastAPI) ``WebSocket`` to the transport ``Connection`` interface."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send_bytes(frame)
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise TransportError(f"node socket closed: {exc}") from None

    async def recv(self) -> bytes:
        try:
            message = await self._ws.receive()
        except RuntimeError as exc:
            raise TransportError(f"node socket closed: {exc}") from None
        if message["type"] == "websocket.disconnect":
            raise TransportError("node disconnected")
        data = message.get("bytes")
        if data is None:
            raise TransportError("node sent a text frame; confide speaks binary frames only")
        return bytes(data)

    async def close(self) -> None:
        # Idempotent, as ``Connection.close`` promises: a socket whose node already left raises
        # WebSocketDisconnect on the first close (RuntimeError after). Letting it escape aborted
        # the session that replaces this one (``NodeSessions.serve`` closes the previous one).
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self._ws.close()
