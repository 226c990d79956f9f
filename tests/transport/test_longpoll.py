"""HTTPS long-polling: frames both ways over plain requests, held polls, sweeps, limits, clear errors.

Each test runs a real uvicorn server on a loopback socket in the test's own event loop,
with a small app holding only the ``/lp`` router; the last test runs the real hub. Limits
are patched where they are read: the node's end, the hub's sessions, the hub's endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.parse
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

import confide.transport._longpoll._client as node_end
import confide.transport._longpoll._routes as hub_routes
import confide.transport._longpoll._session as hub_sessions
from confide._errors import TransportError, WireError
from confide.kit import Kit
from confide.node import Agent, load_node_config
from confide.transport import Connection, LongPollConnection, LongPollConnector, LongPollHub, longpoll_router
from confide.transport._longpoll._framing import pack_frames, unpack_frames
from confide.transport._longpoll._session import LongPollSession
from tests.conftest import COLLABORATION, SUMMARY_PARAMS, InProcessConsortium

T = TypeVar("T")
MiB = 1024 * 1024


async def within(awaitable: Coroutine[Any, Any, T] | asyncio.Future[T], seconds: float = 10) -> T:
    """A safety net so a broken test fails instead of hanging; never a timing assertion."""
    async with asyncio.timeout(seconds):
        return await awaitable


@dataclass
class HubSide:
    """The session loop the hub runs: hands out each connection, echoes, records how it ended."""

    echo: bool = True
    connections: asyncio.Queue[Connection] = field(default_factory=asyncio.Queue)
    endings: asyncio.Queue[TransportError] = field(default_factory=asyncio.Queue)

    async def serve(self, conn: Connection) -> None:
        self.connections.put_nowait(conn)
        try:
            while True:
                frame = await conn.recv()
                if self.echo:
                    await conn.send(frame)
        except TransportError as exc:
            self.endings.put_nowait(exc)


@dataclass
class Served:
    """A uvicorn server for one test, on a socket bound before it starts (nothing to wait for)."""

    hub: LongPollHub
    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str

    async def stop(self, *, close_hub: bool = True) -> None:
        # Closing the hub first answers held polls at once, as the hub's shutdown should.
        if close_hub:
            await self.hub.close()
        self.server.should_exit = True
        await within(self.task)


@contextlib.asynccontextmanager
async def serving(hub: LongPollHub, *, enabled: bool = True) -> AsyncIterator[Served]:
    app = FastAPI()
    app.include_router(longpoll_router())
    if enabled:
        app.state.longpoll = hub
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    served = Served(hub, server, task, f"http://127.0.0.1:{sock.getsockname()[1]}")
    try:
        yield served
    finally:
        if not task.done():
            await served.stop()
        await hub.close()


class PollSpy:
    """Counts the polls the hub takes; a poll is held by the time ``until`` returns."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._changed = asyncio.Condition()
        collect = LongPollSession.collect

        async def spy(session: LongPollSession, wait_s: float) -> list[bytes]:
            self.calls += 1
            async with self._changed:
                self._changed.notify_all()
            return await collect(session, wait_s)

        monkeypatch.setattr(LongPollSession, "collect", spy)

    async def until(self, calls: int) -> None:
        async with self._changed:
            await within(self._changed.wait_for(lambda: self.calls >= calls))


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> PollSpy:
    return PollSpy(monkeypatch)


@contextlib.asynccontextmanager
async def connected(url: str, **options: Any) -> AsyncIterator[LongPollConnection]:
    conn = await within(LongPollConnector(url, **options).connect())
    try:
        yield conn
    finally:
        await conn.close()


# -- the wire format -------------------------------------------------------------------------


def test_frames_pack_and_unpack() -> None:
    frames = [b"", b"a", bytes(range(256)) * 3]

    assert unpack_frames(pack_frames(frames)) == frames
    assert pack_frames([b"ab"]) == b"\x00\x00\x00\x02ab"


@pytest.mark.parametrize("body", [b"\x00\x00", b"\x00\x00\x00\x05abc"])
def test_truncated_bodies_are_wire_errors(body: bytes) -> None:
    with pytest.raises(WireError, match=r"truncated|claims"):
        unpack_frames(body)


# -- frames both ways --------------------------------------------------------------------------


async def test_many_frames_round_trip_in_order_both_ways() -> None:
    frames = [f"frame {i}".encode() * (i % 7 + 1) for i in range(300)]

    async with serving(LongPollHub(HubSide().serve, hold_s=5)) as served, connected(served.url) as conn:
        for frame in frames[:100]:
            await conn.send(frame)
        # Sent concurrently: batched into fewer POSTs, still in call order.
        await within(asyncio.gather(*(conn.send(f) for f in frames[100:])))
        received = [await within(conn.recv()) for _ in frames]

    assert received == frames


async def test_a_5_mib_frame_passes() -> None:
    frame = bytes(range(256)) * (5 * MiB // 256)

    async with serving(LongPollHub(HubSide().serve)) as served, connected(served.url) as conn:
        await conn.send(frame)
        assert await within(conn.recv()) == frame


async def test_a_held_poll_answers_as_soon_as_a_frame_is_queued(spy: PollSpy) -> None:
    side = HubSide(echo=False)

    async with (
        serving(LongPollHub(side.serve, hold_s=60)) as served,
        connected(served.url, hold_s=60) as conn,
    ):
        hub_end = await within(side.connections.get())
        receiving = asyncio.create_task(conn.recv())
        await spy.until(1)
        await hub_end.send(b"now")

        assert await within(receiving) == b"now"


async def test_empty_polls_are_repeated_until_a_frame_comes(spy: PollSpy) -> None:
    side = HubSide(echo=False)

    async with serving(LongPollHub(side.serve, hold_s=0.02)) as served, connected(served.url) as conn:
        hub_end = await within(side.connections.get())
        receiving = asyncio.create_task(conn.recv())
        await spy.until(3)
        await hub_end.send(b"late")

        assert await within(receiving) == b"late"


async def test_a_cancelled_recv_loses_no_frame(spy: PollSpy) -> None:
    side = HubSide(echo=False)

    async with (
        serving(LongPollHub(side.serve, hold_s=60)) as served,
        connected(served.url, hold_s=60) as conn,
    ):
        hub_end = await within(side.connections.get())
        receiving = asyncio.create_task(conn.recv())
        await spy.until(1)
        receiving.cancel()
        await hub_end.send(b"kept")

        assert await within(conn.recv()) == b"kept"


async def test_a_newer_poll_answers_the_older_with_204(spy: PollSpy) -> None:
    side = HubSide(echo=False)

    async with (
        serving(LongPollHub(side.serve, hold_s=60)) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        sid = (await http.post("/lp/sessions")).json()["session"]
        hub_end = await within(side.connections.get())
        first = asyncio.create_task(http.get(f"/lp/sessions/{sid}/frames", params={"wait": 60}))
        await spy.until(1)
        second = asyncio.create_task(http.get(f"/lp/sessions/{sid}/frames", params={"wait": 60}))

        assert (await within(first)).status_code == 204
        await spy.until(2)
        await hub_end.send(b"x")
        answer = await within(second)

    assert answer.status_code == 200
    assert unpack_frames(answer.content) == [b"x"]


# -- ends, limits and errors --------------------------------------------------------------------


async def test_frames_the_hub_queued_before_ending_are_still_collected() -> None:
    async def refuse(conn: Connection) -> None:
        await conn.recv()
        await conn.send(b"refused")
        await conn.close()

    async with serving(LongPollHub(refuse)) as served, connected(served.url) as conn:
        await conn.send(b"hello")

        assert await within(conn.recv()) == b"refused"
        with pytest.raises(TransportError, match="ended the long-poll session"):
            await within(conn.recv())


async def test_an_unknown_session_is_a_transport_error_naming_the_hub() -> None:
    async with serving(LongPollHub(HubSide().serve)) as served:
        conn = LongPollConnection(httpx.AsyncClient(base_url=served.url), served.url, "nope", hold_s=1)
        try:
            with pytest.raises(TransportError, match=rf"{served.url}.*unknown or closed; open a new one"):
                await within(conn.recv())
            with pytest.raises(TransportError, match="unknown or closed"):
                await conn.send(b"x")
        finally:
            await conn.close()


async def test_idle_sessions_are_swept_and_the_hub_side_sees_transport_error() -> None:
    side = HubSide()

    async with (
        serving(LongPollHub(side.serve, hold_s=1, idle_timeout_s=0.05)) as served,
        connected(served.url) as conn,
    ):
        ended = await within(side.endings.get())

        assert "no request from the node for 0.05 s" in str(ended)
        assert len(served.hub) == 0
        with pytest.raises(TransportError, match="unknown or closed"):
            await within(conn.recv())


async def test_closing_the_node_side_ends_the_hub_side() -> None:
    side = HubSide()

    async with serving(LongPollHub(side.serve)) as served:
        async with connected(served.url):
            await within(side.connections.get())

        assert "closed by the node" in str(await within(side.endings.get()))


async def test_a_node_collecting_nothing_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_sessions, "MAX_QUEUED", 100)
    side = HubSide(echo=False)

    async with serving(LongPollHub(side.serve)) as served, connected(served.url) as conn:
        hub_end = await within(side.connections.get())
        await hub_end.send(b"a" * 60)
        with pytest.raises(TransportError, match="more than 100 bytes uncollected"):
            await hub_end.send(b"b" * 60)

        assert await within(conn.recv()) == b"a" * 60
        with pytest.raises(TransportError, match="uncollected"):
            await within(conn.recv())


async def test_oversized_and_malformed_bodies_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_routes, "MAX_BODY", 1000)

    async with (
        serving(LongPollHub(HubSide().serve)) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        sid = (await http.post("/lp/sessions")).json()["session"]
        too_big = await http.post(f"/lp/sessions/{sid}/frames", content=pack_frames([b"x" * 1000]))
        malformed = await http.post(f"/lp/sessions/{sid}/frames", content=b"\x00\x00\x00\x09abc")

    assert too_big.status_code == 413
    assert "exceeds 1000 bytes" in too_big.json()["message"]
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "WireError"


async def test_an_oversized_frame_is_refused_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_end, "MAX_FRAME", 10)

    async with serving(LongPollHub(HubSide().serve)) as served, connected(served.url) as conn:
        with pytest.raises(TransportError, match="exceeds the long-poll limit of 10"):
            await conn.send(b"x" * 11)
        await conn.send(b"fits")
        assert await within(conn.recv()) == b"fits"


async def test_a_hub_without_long_polling_is_a_clear_transport_error() -> None:
    async with serving(LongPollHub(HubSide().serve), enabled=False) as served:
        with pytest.raises(TransportError, match="long-polling is not enabled on this hub"):
            await LongPollConnector(served.url).connect()


async def test_nothing_listening_is_a_transport_error_naming_the_hub() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

        with pytest.raises(TransportError, match=f"cannot reach the hub at {url}"):
            await within(LongPollConnector(url).connect())


def test_other_schemes_are_refused() -> None:
    with pytest.raises(TransportError, match="http:// or https://"):
        LongPollConnector("ws://hub")


async def test_stopping_the_server_ends_the_node_side(spy: PollSpy) -> None:
    async with serving(LongPollHub(HubSide().serve, hold_s=0.05)) as served, connected(served.url) as conn:
        receiving = asyncio.create_task(conn.recv())
        await spy.until(1)
        await served.stop(close_hub=False)

        with pytest.raises(TransportError, match=f"lost the hub at {served.url}"):
            await within(receiving)


async def test_closing_the_hub_answers_held_polls_at_once(spy: PollSpy) -> None:
    async with (
        serving(LongPollHub(HubSide().serve, hold_s=60)) as served,
        connected(served.url, hold_s=60) as conn,
    ):
        receiving = asyncio.create_task(conn.recv())
        await spy.until(1)
        await served.hub.close()

        with pytest.raises(TransportError, match="the hub is shutting down"):
            await within(receiving)


# -- through a proxy ----------------------------------------------------------------------------


@dataclass
class ForwardProxy:
    """A plain HTTP/1.1 forward proxy: one request per connection, no CONNECT, no upgrades."""

    seen: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, target, _ = request_line.split(" ")
            url = urllib.parse.urlsplit(target)
            headers = [h for h in lines if h and not h.lower().startswith(("connection:", "upgrade:"))]
            self.seen.append(f"{method} {url.path}")
            length = next(
                (int(h.split(":")[1]) for h in headers if h.lower().startswith("content-length:")), 0
            )
            body = await reader.readexactly(length)
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
            path = url.path + (f"?{url.query}" if url.query else "")
            up_writer.write(
                "\r\n".join([f"{method} {path} HTTP/1.1", *headers, "Connection: close", "", ""]).encode(
                    "latin-1"
                )
                + body
            )
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
            up_writer.close()
        finally:
            writer.close()


@pytest.mark.parametrize("via", ["proxy_url", "HTTP_PROXY"])
async def test_frames_pass_through_a_plain_forward_proxy(via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ForwardProxy()
    listener = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    if via == "HTTP_PROXY":
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
    options = {"proxy_url": proxy_url} if via == "proxy_url" else {}

    async with (
        listener,
        serving(LongPollHub(HubSide().serve, hold_s=5)) as served,
        connected(served.url, **options) as conn,
    ):
        await conn.send(b"through")
        assert await within(conn.recv()) == b"through"

    assert proxy.seen[0] == "POST /lp/sessions"
    assert {s.split(" ")[0] for s in proxy.seen} >= {"POST", "GET"}


# -- end to end with the real hub ---------------------------------------------------------------


def test_a_node_on_long_polling_serves_a_task_with_the_real_hub(tmp_path: Path) -> None:
    c = InProcessConsortium(tmp_path / "c")
    try:
        c.start()
        hub = LongPollHub(c.app.state.sessions.serve, hold_s=2)

        async def enable() -> None:
            # Starlette matches routes per request, so a router added to the running app serves.
            c.app.include_router(longpoll_router())
            c.app.state.longpoll = hub

        c.bg.call(enable())
        c.stop_node("node-b")
        c.wait_online(["node-b"], online=False)
        config = load_node_config(c.local.node_config_path("node-b"))
        kit = Kit.load(config.kit)
        connector = LongPollConnector(kit.hub_url, ssl_context=kit.tls_context(), hold_s=2)
        c.agents["node-b"] = agent = Agent(config, kit, connector, c.pools["node-b"])
        c.agent_tasks["node-b"] = c.bg.submit(agent.run())
        c.wait_online()

        with c.client() as client:
            results = client.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, timeout_s=30)

        assert [r.node for r in results] == ["node-a", "node-b", "node-c"]
        assert results.failed == []
        assert len(hub) == 1
        c.stop_node("node-b")
        c.bg.call(hub.close())
    finally:
        c.close()
