"""gRPC transport: frames both ways over the generic Relay stream, TLS with the consortium CA, clear errors.

The consortium CA signs with Ed25519 and the hub's TLS certificate is ECDSA P-256; the
TLS tests show gRPC's BoringSSL accepts that chain and does check the Ed25519 signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from confide._errors import TransportError
from confide.crypto import CertificateAuthority, certificate_pem
from confide.kit import Kit
from confide.local import free_port
from confide.node import Agent, load_node_config
from confide.transport import Connection, GrpcConnection, GrpcConnector, GrpcNodeServer
from tests.conftest import COLLABORATION, SUMMARY_PARAMS, InProcessConsortium

Serve = Callable[[Connection], Coroutine[Any, Any, None]]


@dataclass
class Hub:
    """A gRPC listener whose sessions echo every frame and record how they ended."""

    ca: CertificateAuthority
    tls: bool = False
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")
    port: int = 0
    ended: asyncio.Queue[BaseException | None] = field(default_factory=asyncio.Queue)

    async def echo(self, conn: Connection) -> None:
        try:
            while True:
                await conn.send(await conn.recv())
        except BaseException as exc:
            await self.ended.put(exc)
            raise


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # gRPC core reads these itself; a developer's proxy must not carry loopback test traffic.
    for name in ("grpc_proxy", "https_proxy", "http_proxy", "no_grpc_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("t")


@contextlib.asynccontextmanager
async def _listen(hub: Hub, serve: Serve) -> AsyncIterator[GrpcNodeServer]:
    creds = hub.ca.issue_tls(list(hub.hostnames)) if hub.tls else None
    server = GrpcNodeServer(serve, "127.0.0.1", 0, (creds.cert_pem, creds.key_pem) if creds else None)
    hub.port = await server.start()
    try:
        yield server
    finally:
        await server.stop(0.5)


@pytest.fixture(params=[False, True], ids=["plain", "tls"])
async def hub(request: pytest.FixtureRequest, ca: CertificateAuthority) -> AsyncIterator[Hub]:
    hub = Hub(ca, tls=request.param)
    async with _listen(hub, hub.echo):
        yield hub


def _connector(hub: Hub, host: str = "127.0.0.1", **kw: Any) -> GrpcConnector:
    roots = hub.ca.certificate_pem if hub.tls else None
    return GrpcConnector(f"{host}:{hub.port}", root_certificates=roots, **kw)


async def test_frames_round_trip_both_ways(hub: Hub) -> None:
    conn = await _connector(hub).connect()
    try:
        frames = [b"\x00hello", b"", b"\xff" * 1000]  # an empty frame is a frame too
        for frame in frames:
            await conn.send(frame)
        echoed = [await conn.recv() for _ in frames]
    finally:
        await conn.close()

    assert echoed == frames


async def test_a_5_mib_frame_passes(hub: Hub) -> None:
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    conn = await _connector(hub).connect()
    try:
        await conn.send(big)
        echoed = await conn.recv()
    finally:
        await conn.close()

    assert echoed == big


async def test_the_hub_sees_transport_error_when_the_node_closes(hub: Hub) -> None:
    conn = await _connector(hub).connect()
    await conn.send(b"ping")
    assert await conn.recv() == b"ping"

    await conn.close()
    await conn.close()  # idempotent
    ended = await asyncio.wait_for(hub.ended.get(), 5)

    assert isinstance(ended, TransportError)
    with pytest.raises(TransportError, match="closed"):
        await conn.recv()
    with pytest.raises(TransportError, match="closed"):
        await conn.send(b"late")


async def test_tls_accepts_the_hub_by_name_too(ca: CertificateAuthority) -> None:
    hub = Hub(ca, tls=True)
    async with _listen(hub, hub.echo):
        conn = await _connector(hub, "localhost").connect()
        await conn.send(b"by name")
        assert await conn.recv() == b"by name"
        await conn.close()


async def test_tls_refuses_a_certificate_for_another_host(ca: CertificateAuthority) -> None:
    hub = Hub(ca, tls=True, hostnames=("hub.example.org",))
    async with _listen(hub, hub.echo):
        with pytest.raises(TransportError, match="Hostname Verification Check failed"):
            await _connector(hub).connect()


@pytest.mark.parametrize(
    ("consortium_name", "reason"),
    [("other", "unable to get local issuer certificate"), ("t", "certificate signature failure")],
    ids=["other-ca", "impostor-ca-same-name"],
)
async def test_a_node_trusting_another_ca_is_refused(
    ca: CertificateAuthority, consortium_name: str, reason: str
) -> None:
    # An impostor CA with the very same name proves the Ed25519 signature is checked.
    other = CertificateAuthority.create(consortium_name)
    hub = Hub(ca, tls=True)
    async with _listen(hub, hub.echo):
        connector = GrpcConnector(
            f"127.0.0.1:{hub.port}", root_certificates=other.certificate_pem, connect_timeout_s=1
        )
        with pytest.raises(TransportError, match=reason) as caught:
            await connector.connect()

    assert "cannot reach the hub's gRPC endpoint at 127.0.0.1" in str(caught.value)
    assert hub.ended.empty()


async def test_nothing_listening_is_a_quick_transport_error_naming_the_target() -> None:
    target = f"127.0.0.1:{free_port()}"
    started = time.monotonic()

    with pytest.raises(TransportError, match=f"cannot reach the hub's gRPC endpoint at {target}"):
        await GrpcConnector(target, connect_timeout_s=0.5).connect()

    assert time.monotonic() - started < 3


async def test_an_endpoint_that_never_answers_times_out_after_connect_timeout_s() -> None:
    hang_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hang_up.wait()  # accepts TCP, never speaks HTTP/2 (a black-holing middlebox)
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TransportError, match=r"not ready within 0\.3 s"):
            await GrpcConnector(f"127.0.0.1:{port}", connect_timeout_s=0.3).connect()
    finally:
        hang_up.set()
        listener.close()


async def test_frames_the_hub_wrote_before_closing_still_arrive(ca: CertificateAuthority) -> None:
    async def refuse(conn: Connection) -> None:
        await conn.send(b"error notice")
        await conn.close()

    hub = Hub(ca)
    async with _listen(hub, refuse):
        conn = await GrpcConnector(f"127.0.0.1:{hub.port}").connect()
        try:
            assert await conn.recv() == b"error notice"
            with pytest.raises(TransportError, match="ended the gRPC stream"):
                await conn.recv()
        finally:
            await conn.close()


async def test_closing_from_another_task_ends_the_hub_side_session(ca: CertificateAuthority) -> None:
    # NodeSessions closes a node's previous connection when the node reconnects.
    sessions: asyncio.Queue[Connection] = asyncio.Queue()
    hub = Hub(ca)

    async def keep(conn: Connection) -> None:
        await sessions.put(conn)
        await hub.echo(conn)

    async with _listen(hub, keep):
        conn = await GrpcConnector(f"127.0.0.1:{hub.port}").connect()
        await conn.send(b"hello")
        assert await conn.recv() == b"hello"
        hub_end = await sessions.get()

        await hub_end.close()

        assert isinstance(await asyncio.wait_for(hub.ended.get(), 5), TransportError)
        with pytest.raises(TransportError, match="ended the gRPC stream"):
            await conn.recv()
        await conn.close()


async def test_a_recv_that_timed_out_loses_no_frame(ca: CertificateAuthority) -> None:
    release = asyncio.Event()

    async def late(conn: Connection) -> None:
        await release.wait()
        await conn.send(b"late but whole")
        await conn.recv()

    hub = Hub(ca)
    async with _listen(hub, late):
        conn = await GrpcConnector(f"127.0.0.1:{hub.port}").connect()
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.recv(), 0.05)
            release.set()

            assert await conn.recv() == b"late but whole"
        finally:
            await conn.close()


async def test_closing_fails_a_send_in_flight_with_transport_error(ca: CertificateAuthority) -> None:
    never = asyncio.Event()

    async def stall(conn: Connection) -> None:
        await never.wait()  # reads nothing: the node's writes back up

    first_sent = asyncio.Event()

    async def pump(conn: GrpcConnection) -> None:
        while True:
            await conn.send(b"x" * (1 << 20))
            first_sent.set()

    hub = Hub(ca)
    async with _listen(hub, stall):
        conn = await GrpcConnector(f"127.0.0.1:{hub.port}").connect()
        sending = asyncio.create_task(pump(conn))
        await first_sent.wait()  # the pump is now inside its next send

        await conn.close()

        with pytest.raises(TransportError, match="closed by this node"):
            await sending
        never.set()


async def test_stopping_the_server_ends_node_streams(ca: CertificateAuthority) -> None:
    hub = Hub(ca)
    server = GrpcNodeServer(hub.echo, "127.0.0.1", 0)
    hub.port = await server.start()
    conn = await GrpcConnector(f"127.0.0.1:{hub.port}").connect()
    await conn.send(b"x")
    assert await conn.recv() == b"x"

    await server.stop(0)

    assert isinstance(await asyncio.wait_for(hub.ended.get(), 5), TransportError)
    with pytest.raises(TransportError):
        await conn.recv()
    await conn.close()


async def test_a_busy_port_is_a_transport_error(ca: CertificateAuthority) -> None:
    hub = Hub(ca)
    async with _listen(hub, hub.echo):
        with pytest.raises(TransportError, match="cannot listen for gRPC"):
            await GrpcNodeServer(hub.echo, "127.0.0.1", hub.port).start()


class ConnectProxy:
    """A minimal HTTP CONNECT proxy that records the head of every request."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self._tunnels: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        self._server.close()
        for tunnel in list(self._tunnels):
            tunnel.cancel()
        await asyncio.gather(*self._tunnels, return_exceptions=True)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tunnels.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            host, _, port = head.split(b" ")[1].decode().rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tunnels.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("explicit", "environment", "tunnelled"),
    [
        # gRPC percent-decodes the credentials and sends them as Basic auth.
        ("http://nurse:p%40ss@PROXY", {}, True),
        ("http://PROXY", {"https_proxy": "http://elsewhere.invalid:1"}, True),
        (None, {"https_proxy": "http://PROXY"}, True),
        (None, {"HTTPS_PROXY": "PROXY"}, True),  # upper case and no scheme: gRPC alone ignores both
        (None, {"HTTPS_PROXY": "http://PROXY", "NO_PROXY": "localhost,127.0.0.1"}, False),
        (None, {"grpc_proxy": "http://PROXY", "https_proxy": "http://elsewhere.invalid:1"}, True),
    ],
    ids=["explicit", "explicit-over-env", "env", "env-upper-case", "no-proxy", "grpc-proxy-first"],
)
async def test_the_node_tunnels_through_an_http_proxy(
    ca: CertificateAuthority,
    monkeypatch: pytest.MonkeyPatch,
    explicit: str | None,
    environment: dict[str, str],
    tunnelled: bool,
) -> None:
    proxy = ConnectProxy()
    proxy_address = await proxy.start()
    for name, value in environment.items():
        monkeypatch.setenv(name, value.replace("PROXY", proxy_address))
    hub = Hub(ca, tls=True)
    try:
        async with _listen(hub, hub.echo):
            proxy_url = explicit.replace("PROXY", proxy_address) if explicit else None
            conn = await _connector(hub, proxy_url=proxy_url, connect_timeout_s=3).connect()
            await conn.send(b"hello")
            assert await conn.recv() == b"hello"
            await conn.close()
    finally:
        await proxy.close()

    assert len(proxy.heads) == (1 if tunnelled else 0)
    if tunnelled:
        assert proxy.heads[0].startswith(f"CONNECT 127.0.0.1:{hub.port} HTTP/1.1\r\n".encode())
    if explicit and "nurse" in explicit:
        assert b"Proxy-Authorization: Basic bnVyc2U6cEBzcw==\r\n" in proxy.heads[0]


async def test_misconfigured_targets_and_proxies_are_refused() -> None:
    with pytest.raises(TransportError, match="host:port"):
        GrpcConnector("https://hub:443")

    connector = GrpcConnector("127.0.0.1:1", proxy_url="https://user:secret@proxy:3128")
    with pytest.raises(TransportError, match="only supports http://") as caught:
        await connector.connect()
    assert "secret" not in str(caught.value)


def test_a_node_runs_tasks_over_grpc(consortium: InProcessConsortium) -> None:
    settings = consortium.hub_settings
    # TLS with the hub certificate `provision` wrote, issued by the consortium's Ed25519 CA.
    assert settings.tls_cert is not None and settings.tls_key is not None
    tls = (settings.tls_cert.read_bytes(), settings.tls_key.read_bytes())
    server = GrpcNodeServer(consortium.app_state.sessions.serve, "127.0.0.1", 0, tls)
    port = consortium.bg.call(server.start())
    consortium.stop_node("node-b")
    consortium.wait_online(["node-b"], online=False)
    config = load_node_config(consortium.local.node_config_path("node-b"))
    kit = Kit.load(config.kit)
    connector = GrpcConnector(f"127.0.0.1:{port}", root_certificates=certificate_pem(kit.ca))
    agent = Agent(config, kit, connector, consortium.pools["node-b"])
    running = consortium.bg.submit(agent.run())
    try:
        consortium.wait_online(["node-b"])
        assert consortium.bg.call(_connected_over(agent)) == "grpc"

        with consortium.client() as client:
            results = client.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, timeout_s=30)
    finally:
        running.cancel()
        consortium.bg.call(server.stop(0.5))

    assert [r.node for r in results] == consortium.node_ids
    assert [r.ok for r in results] == [True, True, True]


async def _connected_over(agent: Agent) -> str:
    await asyncio.wait_for(agent.connected.wait(), 10)
    assert isinstance(agent.link.connection, GrpcConnection)
    return agent.connector.name
