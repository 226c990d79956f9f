"""The hub application's adapters: the node WebSocket keeps the transport ``Connection`` contract."""

from __future__ import annotations

from starlette.types import Message
from starlette.websockets import WebSocket
from uvicorn.protocols.utils import ClientDisconnected

from confide.hub._app import _StarletteConnection


async def test_closing_a_socket_whose_node_already_left_does_not_raise() -> None:
    """A node that reconnects before the hub saw it leave: closing its old socket must not
    abort the new session (``NodeSessions.serve`` closes the previous one)."""

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        if message["type"] == "websocket.close":
            raise ClientDisconnected  # what uvicorn raises once the peer is gone

    ws = WebSocket({"type": "websocket", "path": "/ws/node", "headers": []}, receive, send)
    await ws.accept()
    conn = _StarletteConnection(ws)

    await conn.close()
    await conn.close()
