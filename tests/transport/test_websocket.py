"""WebSocket transport: URL mapping and clear errors when the hub cannot be reached."""

from __future__ import annotations

import pytest

from confide._errors import TransportError
from confide.local import free_port
from confide.transport import WebSocketConnector, websocket_url


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
