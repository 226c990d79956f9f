"""WebSocket transport: URL mapping, clear errors for an unreachable hub, the hub's end keeps the contract."""

from __future__ import annotations

import pytest
from starlette.types import Message
from starlette.websockets import WebSocket
from uvicorn.protocols.utils import ClientDisconnected

from confide._errors import TransportError
from confide.local import free_port
from confide.transport import NodeWebSocket, WebSocketConnector, websocket_url


@pytest.mark.parametrize(
    ("hub", "expected"),
    [
        ("http://h:1", "ws://h:1/ws/node"),
        ("https://h/", "wss://h/ws/node"),
        ("https://h:8443/x", "wss://h:8443/x/ws/node"),
    ],
)
def test_hub_url_maps_to_the_node_endpoint(hub: str, expected: str) -> None:
    assert websocket_url(hub) == expected


def test_other_schemes_are_refused() -> None:
    with pytest.raises(TransportError, match="http:// or https://"):
        websocket_url("ftp://hub")


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_unreachable_hub_is_a_transport_error_naming_it(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}"

    with pytest.raises(TransportError, match="cannot reach the hub"):
        await WebSocketConnector(url).connect()


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
    conn = NodeWebSocket(ws)

    await conn.close()
    await conn.close()
