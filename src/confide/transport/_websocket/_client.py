"""The node's end of the WebSocket transport (``websockets``): dials ``ws(s)://HUB/ws/node``.

Proxies: ``HTTPS_PROXY`` / ``NO_PROXY`` from the environment, or an explicit ``proxy_url``.
The hub's end is :mod:`confide.transport._websocket._server`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidProxy, InvalidURI

from confide._errors import TransportError
from confide.transport._websocket._framing import MAX_FRAME, WEBSOCKET_PATH

__all__ = ["WebSocketConnection", "WebSocketConnector", "websocket_url"]

CLOSE_TIMEOUT_S = 2.0


def websocket_url(hub_url: str, path: str = WEBSOCKET_PATH) -> str:
    """Map the hub's ``http(s)://`` base URL to its WebSocket endpoint."""
    if hub_url.startswith("https://"):
        return "wss://" + hub_url[len("https://") :].rstrip("/") + path
    if hub_url.startswith("http://"):
        return "ws://" + hub_url[len("http://") :].rstrip("/") + path
    raise TransportError(f"hub URL {hub_url!r} must start with http:// or https://")


class WebSocketConnection:
    """A connected WebSocket carrying binary frames."""

    def __init__(self, ws: ClientConnection, url: str) -> None:
        self._ws = ws
        self._url = url

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send(frame)
        except ConnectionClosed as exc:
            raise TransportError(f"connection to {self._url} closed: {exc}") from None

    async def recv(self) -> bytes:
        try:
            message = await self._ws.recv()
        except ConnectionClosed as exc:
            raise TransportError(f"connection to {self._url} closed: {exc}") from None
        if isinstance(message, str):
            raise TransportError(f"{self._url} sent a text frame; confide speaks binary frames only")
        return message

    async def close(self) -> None:
        # A closing handshake the hub never answers must not keep the socket open.
        try:
            await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self._ws.transport.abort()


class WebSocketConnector:
    """Dials the hub over WebSocket.

    Proxies: ``HTTPS_PROXY`` / ``NO_PROXY`` from the environment are honoured, or an
    explicit ``proxy_url`` (``http://user:password@proxy:3128``) is used.
    """

    name = "websocket"

    def __init__(
        self,
        hub_url: str,
        ssl_context: ssl.SSLContext | None = None,
        *,
        proxy_url: str | None = None,
        open_timeout_s: float = 10.0,
    ) -> None:
        self.url = websocket_url(hub_url)
        self._ssl = ssl_context
        self._proxy: str | Literal[True] = proxy_url or True
        self._open_timeout_s = open_timeout_s

    async def connect(self) -> WebSocketConnection:
        tls: ssl.SSLContext | None = None
        if self.url.startswith("wss://"):
            tls = self._ssl or ssl.create_default_context()
        try:
            ws = await connect(
                self.url,
                max_size=MAX_FRAME,
                open_timeout=self._open_timeout_s,
                compression=None,
                ssl=tls,
                proxy=self._proxy,
                ping_interval=None,  # confide's own heartbeats keep the link alive
            )
        except (OSError, InvalidHandshake, InvalidURI, InvalidProxy, TimeoutError) as exc:
            raise TransportError(f"cannot reach the hub at {self.url}: {exc}") from None
        return WebSocketConnection(ws, self.url)
