"""Reliable delivery: a cut connection or a crashed hub loses nothing and runs nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

from confide.client import Client
from confide.kit import Kit
from confide.local import COLLABORATION, LocalConsortium, free_port, patients
from confide.node import Agent, WorkerPool, load_node_config
from confide.node._worker import StepOutcome
from confide.transport import WebSocketConnector
from tests.conftest import SUMMARY_PARAMS, InProcessConsortium


class CuttableRelay:
    """A TCP relay whose live connections the test can cut at will."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)

    async def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


class CountingGatedWorkers(WorkerPool):
    """Real workers behind a gate, counting how often a step really ran."""

    def __init__(self, pool: WorkerPool, gate: asyncio.Event, started: asyncio.Event) -> None:
        self._inner, self._gate, self._started = pool, gate, started
        self.runs = 0

    async def warm_up(self) -> None:
        await self._inner.warm_up()

    async def run(self, algorithm: str, params: dict[str, object], step: str = "main") -> StepOutcome:
        self.runs += 1
        self._started.set()
        await self._gate.wait()
        return await self._inner.run(algorithm, params, step)

    def close(self) -> None:
        pass


async def _events() -> tuple[asyncio.Event, asyncio.Event]:
    return asyncio.Event(), asyncio.Event()


def test_a_cut_connection_mid_run_loses_nothing_and_runs_nothing_twice(
    consortium: InProcessConsortium,
) -> None:
    relay = CuttableRelay(consortium.hub_port)
    relay_port = free_port()
    consortium.bg.call(relay.start(relay_port))
    gate, started = consortium.bg.call(_events())
    workers = CountingGatedWorkers(consortium.pools["node-b"], gate, started)
    consortium.stop_node("node-b")
    config = load_node_config(consortium.local.node_config_path("node-b"))
    kit = Kit.load(config.kit)
    agent = Agent(config, kit, WebSocketConnector(f"http://127.0.0.1:{relay_port}"), workers)
    runner = consortium.bg.submit(agent.run())
    consortium.wait_online(["node-b"])

    with consortium.client() as client:
        task_id = client.submit(COLLABORATION, "stats.summary", SUMMARY_PARAMS)
        consortium.bg.call(asyncio.wait_for(started.wait(), 30))
        consortium.bg.call(relay.cut())  # the link drops while node-b is computing
        consortium.bg.call(_set(gate))  # it finishes offline; the result waits, unacknowledged
        client.wait(task_id, timeout_s=30)  # node-b reconnects and resends
        results = client.results(task_id).raise_for_errors()

    runner.cancel()
    assert len(results) == 3
    assert workers.runs == 1


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_a_hub_killed_mid_task_loses_no_peer_message(tmp_path: Path) -> None:
    """The ring's masked sum waits in the hub's mailbox for an offline node; the hub is
    killed (SIGKILL) and restarted; when the node comes, the ring completes, once."""
    params = {"table": "patients", "column": "age", "decimals": 0, "timeout_s": 120}
    consortium = LocalConsortium(tmp_path / "c")
    consortium.prepare()
    try:
        consortium.start_hub()
        for node_id in ("node-a", "node-b"):
            consortium.start_node(node_id)
        consortium.wait_online(["node-a", "node-b"])
        with Client(consortium.researcher_kit) as client:
            task_id = client.submit(COLLABORATION, "secure.ring_sum", params)
            # wait until node-b has relayed (its run finished: its sum now waits for node-c)
            state = client.status(task_id)
            while state.runs["node-b"] != "completed":
                state = client.status(task_id, wait_s=10, known=state.version)
            consortium.stop("hub", kill=True)
            consortium.start_hub()
            consortium.start_node("node-c")
            client.wait(task_id, timeout_s=60)
            results = client.results(task_id).raise_for_errors()
    finally:
        consortium.close()

    expected = sum(sum(patients(i, consortium.rows).column("age").to_pylist()) for i in range(3))
    assert results.results[0].output is not None and results.results[0].output["total"] == expected
    for node_id in consortium.node_ids:
        log = consortium.log_path(node_id).read_text()
        assert len(re.findall(rf"run {task_id}-{node_id} of secure.ring_sum: completed", log)) == 1


class CutOnceRelay(CuttableRelay):
    """Cuts every live connection once, after ``after_bytes`` went from node to hub."""

    def __init__(self, target_port: int, after_bytes: int) -> None:
        super().__init__(target_port)
        self.after_bytes = after_bytes
        self.forwarded = 0
        self.cuts = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                    if upstream:
                        self.forwarded += len(data)
                        if self.cuts == 0 and self.forwarded >= self.after_bytes:
                            self.cuts += 1
                            await self.cut()
                            return
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


def test_a_stream_cut_mid_transfer_resumes_and_arrives_whole(consortium: InProcessConsortium) -> None:
    relay = CutOnceRelay(consortium.hub_port, after_bytes=6 * 1024 * 1024)
    relay_port = free_port()
    consortium.bg.call(relay.start(relay_port))
    consortium.stop_node("node-a")
    config = load_node_config(consortium.local.node_config_path("node-a"))
    kit = Kit.load(config.kit)
    agent = Agent(
        config, kit, WebSocketConnector(f"http://127.0.0.1:{relay_port}"), consortium.pools["node-a"]
    )
    runner = consortium.bg.submit(agent.run())
    consortium.wait_online(["node-a"])
    params = {"sender": "node-a", "receiver": "node-b", "size_mb": 16, "timeout_s": 60}

    with consortium.client() as client:
        results = client.run(
            COLLABORATION, "diagnostics.relay", params, nodes=["node-a", "node-b"], timeout_s=60
        )

    runner.cancel()
    sender, receiver = (r.output or {} for r in results.raise_for_errors())
    assert relay.cuts == 1  # the link really dropped mid-stream
    assert sender["sha256"] == receiver["sha256"] and receiver["bytes"] == 16 * 1024 * 1024
