"""The node's end of the gRPC transport: dials ``HOST:PORT`` and opens one Relay stream.

Proxies: gRPC core reads only the lower-case ``grpc_proxy`` / ``https_proxy`` /
``http_proxy`` and ``no_proxy``, so the connector decides itself, as the WebSocket
transport does (``urllib.request.getproxies`` / ``proxy_bypass``: either case, and the
operating system's settings where Python reads them), and hands gRPC the answer in the
``grpc.http_proxy`` channel option, an empty value meaning "no proxy". An explicit
``proxy_url`` (``http://[user:pass@]host:port``) wins over the environment. gRPC speaks
only to HTTP CONNECT proxies (``http://``). TLS uses gRPC's own BoringSSL with the
consortium CA's PEM as the trust root (gRPC's bundled public roots when none is given).
The hub's end is :mod:`confide.transport._grpc._server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import grpc.aio

from confide._errors import TransportError
from confide.transport._grpc._framing import CHANNEL_OPTIONS, GRPC_METHOD
from confide.transport._grpc._stream import GRPC_ERRORS, GrpcStream, describe

__all__ = ["GrpcConnection", "GrpcConnector"]

DONE_WRITING_TIMEOUT_S = 1.0
PROBE_TIMEOUT_S = 1.0


def _redacted(url: str) -> str:
    """``url`` without the password, for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    credentials, _, host = parts.netloc.rpartition("@")
    user = credentials.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class GrpcConnection(GrpcStream):
    """The node's end: a stream-stream call on its own channel."""

    def __init__(self, channel: grpc.aio.Channel, call: Any, target: str) -> None:
        super().__init__(call.read, call.write)
        self._channel = channel
        self._call = call
        self._target = target

    def where(self) -> str:
        return f"the hub at {self._target}"

    async def close(self) -> None:
        if not self.end("closed by this node"):
            return
        # Half-close first so the hub reads a clean end of stream, then tear down; a write
        # still in flight (a peer not reading) would only hold the half-close back.
        if not self._send_lock.locked():
            with contextlib.suppress(*GRPC_ERRORS, TimeoutError):
                await asyncio.wait_for(self._call.done_writing(), DONE_WRITING_TIMEOUT_S)
        self._call.cancel()
        with contextlib.suppress(*GRPC_ERRORS):
            await self._channel.close(grace=None)


class GrpcConnector:
    """Dials the hub's gRPC endpoint ``host:port`` (TLS when ``root_certificates`` is given).

    Parameters
    ----------
    target
        The hub's ``host:port``; with TLS the host must be named in the hub's certificate.
    root_certificates
        PEM of the CA the hub's certificate chains to (the consortium CA); ``None`` dials
        without TLS.
    proxy_url
        An HTTP CONNECT proxy, ``http://[user:pass@]host:port``, used instead of the
        environment's (gRPC core still bypasses it for hosts in a lower-case ``no_proxy``).
    connect_timeout_s
        How long to wait for the channel (TCP, proxy, TLS, HTTP/2) to become ready.
    """

    name = "grpc"

    def __init__(
        self,
        target: str,
        *,
        root_certificates: bytes | None = None,
        proxy_url: str | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if target.startswith(("http://", "https://")):
            raise TransportError(f"gRPC target {target!r} must be host:port, without a scheme")
        self.target = target
        self._root_certificates = root_certificates
        self._connect_timeout_s = connect_timeout_s
        self._proxy_url = proxy_url

    def _channel(self, proxy: str) -> grpc.aio.Channel:
        options = [*CHANNEL_OPTIONS, ("grpc.http_proxy", proxy)]
        if self._root_certificates is None:
            return grpc.aio.insecure_channel(self.target, options=options)
        credentials = grpc.ssl_channel_credentials(root_certificates=self._root_certificates)
        return grpc.aio.secure_channel(self.target, credentials, options=options)

    def proxy(self) -> str | None:
        """The HTTP CONNECT proxy this connector would use now, or ``None`` to dial directly."""
        if self._proxy_url is not None:
            return self._proxy_url
        if urllib.request.proxy_bypass(self.target):
            return None
        proxies = urllib.request.getproxies()
        found = next((proxies[k] for k in ("grpc", "https", "http") if proxies.get(k)), None)
        if found is not None and "://" not in found:
            found = "http://" + found
        return found

    async def connect(self) -> GrpcConnection:
        proxy = self.proxy()
        if proxy is not None and not proxy.startswith("http://"):
            # Refused here, not in __init__, so a node falls back to its other transports.
            raise TransportError(
                f"cannot use the proxy {_redacted(proxy)} for gRPC: "
                "gRPC only supports http:// (HTTP CONNECT) proxies"
            )
        channel = self._channel(proxy or "")
        try:
            failure = await asyncio.wait_for(self._ready(channel), self._connect_timeout_s)
        except TimeoutError:
            failure = f"not ready within {self._connect_timeout_s:g} s"
        except BaseException:
            await channel.close(grace=None)
            raise
        if failure is not None:
            await channel.close(grace=None)
            raise TransportError(f"cannot reach the hub's gRPC endpoint at {self.target}: {failure}")
        stream = channel.stream_stream(GRPC_METHOD, request_serializer=None, response_deserializer=None)
        return GrpcConnection(channel, stream(wait_for_ready=False), self.target)

    async def _ready(self, channel: grpc.aio.Channel) -> str | None:
        """Wait until ``channel`` is ready (``None``) or has failed to connect (the reason).

        Unlike ``channel_ready()``, which keeps retrying until the timeout, this gives up at
        the first failed attempt (refused, TLS verification, proxy answer): the agent has
        its own backoff, and the next transport in the node's list gets its turn sooner.
        """
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                return await self._last_error(channel)
            if state is grpc.ChannelConnectivity.SHUTDOWN:
                return "the channel was shut down"
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)
        return None

    @staticmethod
    async def _last_error(channel: grpc.aio.Channel) -> str:
        # The channel's state hides why connecting failed; a call that may not wait for a
        # ready channel fails at once with core's last connection error.
        probe = channel.unary_unary(GRPC_METHOD, request_serializer=None, response_deserializer=None)
        try:
            await probe(b"", timeout=PROBE_TIMEOUT_S, wait_for_ready=False)
        except GRPC_ERRORS as exc:
            return describe(exc)
        return "the connection failed"
