"""The node's end of HTTPS long-polling: a ``Connection`` made of ordinary requests (``httpx``).

The node POSTs its frames and keeps one GET held at the hub for the hub's (the requests
are in :mod:`confide.transport._longpoll._framing`), through the configured forward
proxy or the environment's (``HTTPS_PROXY`` / ``NO_PROXY``). Any failed request ends the
connection with :class:`TransportError`, exactly like a dropped WebSocket: frames lost
with it are recovered by the agent's acks and the hub's redelivery after the reconnect.
The hub's end is :mod:`confide.transport._longpoll._session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections import deque

import httpx

from confide._errors import TransportError, WireError
from confide.transport._longpoll._framing import (
    MAX_BODY,
    MAX_FRAME,
    MEDIA_TYPE,
    PREFIX,
    batches,
    pack_frames,
    unpack_frames,
)

__all__ = ["LongPollConnection", "LongPollConnector"]

CONNECT_TIMEOUT_S = 10.0
# How much longer than the hold the node waits for an answer before calling the link dead.
READ_MARGIN_S = 30.0
CLOSE_TIMEOUT_S = 2.0
_OCTETS = {"content-type": MEDIA_TYPE}


def _describe(exc: BaseException) -> str:
    # Several httpx errors (timeouts above all) carry an empty message.
    return str(exc) or type(exc).__name__


async def _read(response: httpx.Response, limit: int) -> bytes | None:
    """A streamed body, or ``None`` once it grows past ``limit`` bytes."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _reason(response: httpx.Response, body: bytes | None) -> str:
    """The hub's JSON ``message`` if there is one, else the status line (never a proxy's page)."""
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body or b"").get("message")
        if isinstance(message, str):
            return message
    return f"{response.status_code} {response.reason_phrase}"


class _Batch:
    """Frames sent while a POST was in flight; they go out together in the next one."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.error: TransportError | None = None


class LongPollConnection:
    """A long-polling session with the hub carrying binary frames.

    ``send`` POSTs frames in order, batching those sent while a POST is in flight;
    ``recv`` hands out frames from a local buffer that one background GET at a time
    refills. The GET survives a cancelled ``recv`` (as ``asyncio.wait_for`` does), so
    no frame is lost to a timeout.
    """

    def __init__(self, client: httpx.AsyncClient, hub_url: str, session: str, hold_s: float) -> None:
        self._client = client
        self._hub = hub_url
        self._path = f"{PREFIX}/sessions/{session}"
        self._hold_s = hold_s
        self._inbox: deque[bytes] = deque()
        self._fetch: asyncio.Task[None] | None = None
        self._batch = _Batch()
        self._send_lock = asyncio.Lock()
        self._failure: TransportError | None = None
        self._closed = False

    async def send(self, frame: bytes) -> None:
        self._check_open()
        if len(frame) > MAX_FRAME:
            raise TransportError(
                f"a {len(frame)}-byte frame exceeds the long-poll limit of {MAX_FRAME} bytes"
            )
        batch = self._batch
        batch.frames.append(frame)
        async with self._send_lock:
            if batch is self._batch:  # nobody took it while we waited: post it ourselves
                self._batch = _Batch()
                await self._post(batch)
        if batch.error is not None:
            raise batch.error

    async def recv(self) -> bytes:
        while not self._inbox:
            self._check_open()
            if self._fetch is None:
                self._fetch = asyncio.create_task(self._poll(), name="confide-longpoll-get")
                self._fetch.add_done_callback(_retrieve)
            fetch = self._fetch
            try:
                await asyncio.shield(fetch)
            except asyncio.CancelledError:
                # close() stopped the GET: the loop reports the closed connection. Our own
                # cancellation leaves the GET running for the next recv().
                task = asyncio.current_task()
                if not fetch.cancelled() or (task is not None and task.cancelling()):
                    raise
        return self._inbox.popleft()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._fetch is not None:
            self._fetch.cancel()
        try:
            # Best effort: the hub sweeps sessions nobody polls, should this not arrive.
            with contextlib.suppress(httpx.HTTPError, TimeoutError):
                await asyncio.wait_for(self._client.delete(self._path), CLOSE_TIMEOUT_S)
        finally:
            await self._client.aclose()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise TransportError(str(self._failure))
        if self._closed:
            raise TransportError(f"long-poll connection to {self._hub} is closed")

    def _fail(self, exc: TransportError) -> TransportError:
        if self._failure is None:
            self._failure = exc
        return exc

    async def _post(self, batch: _Batch) -> None:
        try:
            self._check_open()
            for group in batches(batch.frames):
                await self._post_group(group)
        except TransportError as exc:
            batch.error = self._fail(exc)
        except BaseException:
            # Cancelled mid-request: the hub may hold part of the batch, so order is lost.
            batch.error = self._fail(TransportError(f"sending to {self._hub} was interrupted"))
            raise

    async def _post_group(self, frames: list[bytes]) -> None:
        url = f"{self._path}/frames"
        try:
            response = await self._client.post(url, content=pack_frames(frames), headers=_OCTETS)
        except httpx.HTTPError as exc:
            raise self._lost(exc) from None
        if response.status_code != 204:
            raise self._refused(response, response.content, "the frames sent")

    async def _poll(self) -> None:
        try:
            while not self._inbox:
                self._check_open()
                self._inbox.extend(await self._get())
        except TransportError as exc:
            raise self._fail(exc) from None
        finally:
            self._fetch = None

    async def _get(self) -> list[bytes]:
        url = f"{self._path}/frames"
        try:
            async with self._client.stream("GET", url, params={"wait": self._hold_s}) as response:
                if response.status_code == 204:
                    return []
                if response.status_code != 200:
                    raise self._refused(response, await _read(response, 65536), "a poll")
                body = await _read(response, MAX_BODY)
        except httpx.HTTPError as exc:
            raise self._lost(exc) from None
        if body is None:
            raise TransportError(f"the hub at {self._hub} answered a poll with more than {MAX_BODY} bytes")
        try:
            return unpack_frames(body)
        except WireError as exc:
            raise TransportError(f"the hub at {self._hub} sent a malformed body: {exc}") from None

    def _lost(self, exc: httpx.HTTPError) -> TransportError:
        if self._closed:
            return TransportError(f"long-poll connection to {self._hub} was closed")
        return TransportError(f"lost the hub at {self._hub}: {_describe(exc)}")

    def _refused(self, response: httpx.Response, body: bytes | None, what: str) -> TransportError:
        reason = _reason(response, body)
        if response.status_code == 404:
            return TransportError(f"the hub at {self._hub} ended the long-poll session: {reason}")
        return TransportError(f"the hub at {self._hub} refused {what}: {reason}")


def _retrieve(task: asyncio.Task[None]) -> None:
    # Marks a failed background GET as seen; recv() reports the failure itself.
    if not task.cancelled():
        task.exception()


class LongPollConnector:
    """Dials the hub by HTTPS long-polling, through the configured or environment proxy.

    Parameters
    ----------
    hub_url : the hub's ``http(s)://`` base URL.
    ssl_context : trust for the hub's certificate (e.g. the OS store behind a TLS-inspecting
        proxy); ``None`` uses the default CA bundle.
    proxy_url : an explicit forward proxy; ``None`` honours ``HTTPS_PROXY``/``NO_PROXY``.
    hold_s : how long the hub may hold a poll; keep it below the proxy's idle timeout.
    """

    name = "longpoll"

    def __init__(
        self,
        hub_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxy_url: str | None = None,
        hold_s: float = 25.0,
    ) -> None:
        if not hub_url.startswith(("http://", "https://")):
            raise TransportError(f"hub URL {hub_url!r} must start with http:// or https://")
        if hold_s <= 0:
            raise TransportError(f"long-poll hold must be positive, not {hold_s}")
        self.url = hub_url.rstrip("/")
        self._ssl = ssl_context
        self._proxy = proxy_url
        self._hold_s = hold_s

    async def connect(self) -> LongPollConnection:
        client = httpx.AsyncClient(
            base_url=self.url,
            verify=self._ssl or True,
            proxy=self._proxy,
            trust_env=True,
            timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=self._hold_s + READ_MARGIN_S),
        )
        try:
            session = await self._open_session(client)
        except BaseException:
            await client.aclose()
            raise
        return LongPollConnection(client, self.url, session, self._hold_s)

    async def _open_session(self, client: httpx.AsyncClient) -> str:
        try:
            response = await client.post(f"{PREFIX}/sessions")
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach the hub at {self.url}: {_describe(exc)}") from None
        if response.status_code not in (200, 201):
            reason = _reason(response, response.content)
            raise TransportError(f"the hub at {self.url} refused a long-poll session: {reason}")
        with contextlib.suppress(ValueError, AttributeError):
            session = json.loads(response.content).get("session")
            if isinstance(session, str) and session:
                return session
        raise TransportError(f"the hub at {self.url} answered without a long-poll session")
