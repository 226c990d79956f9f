"""The node agent: credentials, policy, sealed-input checks, replay, disconnect mid-run."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from confide._errors import AuthError, TaskError
from confide.client import Client
from confide.crypto import MemoryReplayGuard
from confide.kit import Kit
from confide.node import Agent, WorkerPool, load_node_config
from confide.node._worker import StepOutcome
from confide.transport import MemoryConnection, MemoryConnector, WebSocketConnector
from confide.wire import (
    HUB,
    Envelope,
    MessageKind,
    RunAssignment,
    RunStatusUpdate,
    TaskOutcome,
    TaskRequest,
    Welcome,
    decode_control,
    encode_control,
    open_envelope,
    seal_envelope,
)
from tests.conftest import COLLABORATION, SUMMARY_PARAMS, InProcessConsortium


def test_wrong_token_stops_the_agent_with_a_clear_error(consortium: InProcessConsortium) -> None:
    config = load_node_config(consortium.local.node_config_path("node-a"))
    kit = dataclasses.replace(Kit.load(config.kit), token="x" * 43)
    agent = Agent(config, kit, WebSocketConnector(kit.hub_url, kit.tls_context()), consortium.pools["node-a"])

    with pytest.raises(AuthError, match=r"refused node 'node-a'.*token"):
        consortium.bg.call(agent.run())


def test_another_nodes_token_is_refused(consortium: InProcessConsortium) -> None:
    config = load_node_config(consortium.local.node_config_path("node-a"))
    other = Kit.load(consortium.local.kits / "nodes" / "node-b")
    kit = dataclasses.replace(Kit.load(config.kit), token=other.token)
    agent = Agent(config, kit, WebSocketConnector(kit.hub_url, kit.tls_context()), consortium.pools["node-a"])

    with pytest.raises(AuthError, match="node-a"):
        consortium.bg.call(agent.run())


def test_policy_refusal_names_the_node_and_what_to_change(consortium: InProcessConsortium) -> None:
    path = consortium.local.node_config_path("node-b")
    config = yaml.safe_load(path.read_text())
    config["policy"]["algorithms"] = []
    path.write_text(yaml.safe_dump(config))
    consortium.stop_node("node-b")
    consortium.start_node("node-b")
    consortium.wait_online()

    with consortium.client() as client:
        results = client.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, timeout_s=30)

    [failed] = results.failed
    assert failed.node == "node-b"
    assert "policy does not allow algorithm 'stats.summary'" in (failed.error or "")
    assert "policy.algorithms" in (failed.error or "")


def test_tampered_input_is_refused_and_the_researcher_told(consortium: InProcessConsortium) -> None:
    alice = Kit.load(consortium.researcher_kit)
    with consortium.client() as client:
        nodes = client.nodes(COLLABORATION)
        plaintext = (
            TaskRequest(collaboration=COLLABORATION, algorithm="stats.summary", params=SUMMARY_PARAMS)
            .model_dump_json()
            .encode()
        )
        envelope = seal_envelope(
            Envelope.new(MessageKind.TASK_INPUT, "alice", "node-a", task_id="tampered1"),
            plaintext,
            alice.identity,
            nodes["node-a"],
        )
        body = bytearray(envelope.body)
        body[10] ^= 1  # one bit of ciphertext flipped in transit
        tampered = dataclasses.replace(envelope, body=bytes(body)).encode()
        import base64

        client._request(
            "POST",
            "/api/tasks",
            json={
                "id": "tampered1",
                "collaboration": COLLABORATION,
                "algorithm": "stats.summary",
                "inputs": {"node-a": base64.b64encode(tampered).decode()},
            },
        )
        client.wait("tampered1", 30)
        [result] = client.results("tampered1")

    assert not result.ok
    assert "altered in transit" in (result.error or "")


class GatedWorkers(WorkerPool):
    """Real workers that wait for the test to open a gate before running."""

    def __init__(self, pool: WorkerPool, gate: asyncio.Event, started: asyncio.Event) -> None:
        self._inner = pool
        self._gate = gate
        self._started = started

    async def warm_up(self) -> None:
        await self._inner.warm_up()

    async def run(self, algorithm: str, params: dict[str, object], step: str = "main") -> StepOutcome:
        self._started.set()
        await self._gate.wait()
        return await self._inner.run(algorithm, params, step)

    def close(self) -> None:
        pass


def test_node_that_disconnects_mid_run_completes_the_task_when_back(
    consortium: InProcessConsortium,
) -> None:
    gate = consortium.bg.call(_make_event())
    started = consortium.bg.call(_make_event())
    consortium.stop_node("node-b")
    consortium.start_node("node-b", workers=GatedWorkers(consortium.pools["node-b"], gate, started))
    consortium.wait_online()

    with consortium.client() as client:
        task_id = client.submit(COLLABORATION, "stats.summary", SUMMARY_PARAMS)
        consortium.bg.call(asyncio.wait_for(started.wait(), 30))
        # node-b's gate reports its start before any work; node-a and node-c run the real
        # step in a fresh worker process, which takes seconds on a busy machine.
        _await_runs(client, task_id, {"node-a": "completed", "node-c": "completed"})
        consortium.stop_node("node-b")  # the connection drops while the step is running
        consortium.wait_online(["node-b"], online=False)
        with pytest.raises(TaskError, match=r"node-b \(offline, running\)"):
            client.wait(task_id, timeout_s=0.5)
        state = client.status(task_id)
        assert state.runs == {"node-a": "completed", "node-b": "running", "node-c": "completed"}

        consortium.start_node("node-b")  # back, with ordinary workers: the run is redelivered
        client.wait(task_id, timeout_s=30)
        results = client.results(task_id)

    assert [r.ok for r in results] == [True, True, True]


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


def _await_runs(client: Client, task_id: str, wanted: dict[str, str], timeout_s: float = 30) -> None:
    """Block until the hub reports each node's run of ``task_id`` in its ``wanted`` state."""
    deadline = time.monotonic() + timeout_s
    state = client.status(task_id)
    while {node: state.runs.get(node) for node in wanted} != wanted:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"runs of task {task_id} are {state.runs}, not {wanted}, after {timeout_s} s")
        # held by the hub until the state changes (or 10 s, within the client's HTTP timeout)
        state = client.status(task_id, wait_s=min(left, 10.0), known=state.version)


async def test_replayed_input_is_refused_by_the_node(consortium: InProcessConsortium) -> None:
    """A hub that re-sends a sealed input as a new run gets a refusal, not a second run."""
    alice = Kit.load(consortium.researcher_kit)
    config = load_node_config(consortium.local.node_config_path("node-a"))
    node_kit = Kit.load(config.kit)
    cert = (consortium.researcher_kit / "cert.pem").read_text()
    request = TaskRequest(collaboration=COLLABORATION, algorithm="stats.summary", params=SUMMARY_PARAMS)
    sealed = seal_envelope(
        Envelope.new(MessageKind.TASK_INPUT, "alice", "node-a", task_id="t-replay"),
        request.model_dump_json().encode(),
        alice.identity,
        node_kit.public,
    ).encode()
    finals: list[TaskOutcome] = []
    done = asyncio.Event()

    async def fake_hub(conn: MemoryConnection) -> None:
        await conn.recv()  # HELLO
        await conn.send(
            encode_control(
                Welcome(node_id="node-a", collaborations=[COLLABORATION], heartbeat_s=20),
                HUB,
                "node-a",
            ).encode()
        )
        for run_id in ("t-replay-1", "t-replay-2"):
            assignment = RunAssignment(
                run_id=run_id,
                task_id="t-replay",
                collaboration_id=COLLABORATION,
                researcher_id="alice",
                algorithm="stats.summary",
                researcher_certificate=cert,
            )
            await conn.send(encode_control(assignment, HUB, "node-a", sealed, "t-replay").encode())
        guard = MemoryReplayGuard()
        while len(finals) < 2:
            envelope = Envelope.decode(await conn.recv())
            if envelope.kind is not MessageKind.RUN_STATUS:
                continue
            update, attachment = decode_control(envelope, RunStatusUpdate)
            if update.status in ("completed", "failed"):
                result = Envelope.decode(attachment)
                plaintext = open_envelope(result, me=alice.identity, sender=node_kit.public, guard=guard)
                finals.append(TaskOutcome.model_validate(json.loads(plaintext)))
        done.set()

    agent = Agent(config, node_kit, MemoryConnector(fake_hub), consortium.pools["node-a"])
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(done.wait(), 30)
    runner.cancel()

    ran, refused = sorted(finals, key=lambda o: not o.ok)
    assert ran.ok and ran.output is not None
    assert not refused.ok and "received before" in (refused.error or "")


async def test_silent_hub_is_detected_and_the_agent_reconnects(consortium: InProcessConsortium) -> None:
    config = load_node_config(consortium.local.node_config_path("node-a")).model_copy(
        update={"heartbeat_s": 0.05}
    )
    kit = Kit.load(config.kit)
    connections: list[int] = []
    second = asyncio.Event()

    async def silent_hub(conn: MemoryConnection) -> None:
        await conn.recv()  # HELLO
        welcome = Welcome(node_id="node-a", collaborations=[], heartbeat_s=0.05)
        await conn.send(encode_control(welcome, HUB, "node-a").encode())
        connections.append(1)
        if len(connections) == 2:
            second.set()
        await asyncio.Event().wait()  # never answers again, never closes

    agent = Agent(config, kit, MemoryConnector(silent_hub), consortium.pools["node-a"])
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(second.wait(), 10)
    runner.cancel()

    assert len(connections) == 2


def test_nodes_reconnect_after_a_hub_restart_and_pending_runs_complete(
    consortium: InProcessConsortium,
) -> None:
    consortium.stop_hub()
    consortium.start_hub()  # same port, same SQLite file
    consortium.wait_online(timeout_s=30)

    with consortium.client() as client:
        results = client.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, timeout_s=30)

    assert [r.ok for r in results] == [True, True, True]


_CHARGE_OFF_THE_LOOP = """
import asyncio, sys, threading
from pathlib import Path

on_loop_thread = []


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "opacus":
            on_loop_thread.append(threading.current_thread() is threading.main_thread())
        return None


sys.meta_path.insert(0, Watch())
from confide.algorithms import TrainingCost
from confide.node._budget import PrivacyBudget
from confide.node._config import Policy

directory = Path(sys.argv[1])
policy = Policy(privacy_budget={"epsilon": 10, "delta": 1e-5}, ledger=directory / "ledger.sqlite")
budget = PrivacyBudget(policy, directory)
cost = TrainingCost(noise_multiplier=1.0, sample_rate=0.05, steps=20, rounds_left=1, delta=1e-5)
charge = budget.charge_training(
    researcher="alice", task_id="t1", dataset="train", job_id="job", round=0, cost=cost
)
spend = asyncio.run(charge)
print(on_loop_thread, spend.job_epsilon > 0, ",".join(sorted(p.name for p in directory.glob("*.sqlite"))))
"""


def test_the_first_training_charge_imports_opacus_off_the_event_loop(tmp_path: Path) -> None:
    # Importing Opacus (and torch) takes seconds; on the event loop it would stall every
    # other task of the node: heartbeats, peer messages, other runs.
    script = [sys.executable, "-c", _CHARGE_OFF_THE_LOOP, str(tmp_path)]
    done = subprocess.run(script, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[False]", "True", "ledger.sqlite"]  # one file: ledger and accountant


async def test_a_malformed_frame_from_the_hub_is_refused_and_the_node_stays_on_the_same_link(
    consortium: InProcessConsortium,
) -> None:
    config = load_node_config(consortium.local.node_config_path("node-a")).model_copy(
        update={"heartbeat_s": 0.05}
    )
    kit = Kit.load(config.kit)
    connections: list[int] = []
    heartbeat_after = asyncio.Event()

    async def hostile_hub(conn: MemoryConnection) -> None:
        await conn.recv()  # HELLO
        welcome = Welcome(node_id="node-a", collaborations=[], heartbeat_s=0.05)
        await conn.send(encode_control(welcome, HUB, "node-a").encode())
        connections.append(1)
        await conn.send(b"\x00garbage that is no envelope")
        bad_run = Envelope.new(MessageKind.RUN, HUB, "node-a", b"{not json")
        await conn.send(bad_run.encode())
        while True:  # the node is still here, on this connection, sending heartbeats
            if Envelope.decode(await conn.recv()).kind is MessageKind.HEARTBEAT:
                heartbeat_after.set()

    agent = Agent(config, kit, MemoryConnector(hostile_hub), consortium.pools["node-a"])
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(heartbeat_after.wait(), 10)
    runner.cancel()

    assert connections == [1]
