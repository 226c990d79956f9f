"""Large payloads node to node: ``diagnostics.relay`` streams sealed 1 MiB chunks through the hub."""

from __future__ import annotations

import asyncio

from confide.crypto import MemoryReplayGuard
from confide.kit import Kit
from confide.node import Agent, load_node_config
from confide.transport import MemoryConnection, MemoryConnector
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
from tests.conftest import COLLABORATION, InProcessConsortium


def test_a_stream_arrives_whole_and_the_hub_keeps_nothing(consortium: InProcessConsortium) -> None:
    params = {"sender": "node-a", "receiver": "node-c", "size_mb": 24}

    with consortium.client() as client:
        results = client.run(COLLABORATION, "diagnostics.relay", params, timeout_s=60).raise_for_errors()

    sender, bystander, receiver = (r.output or {} for r in results)
    assert (sender["role"], bystander["role"], receiver["role"]) == ("sender", "bystander", "receiver")
    assert sender["bytes"] == receiver["bytes"] == 24 * 1024 * 1024
    assert sender["sha256"] == receiver["sha256"]
    for node in consortium.node_ids:
        assert consortium.bg.call(consortium.app_state.store.messages_for(node, 0)) == []


def test_a_stream_waits_for_an_offline_receiver(consortium: InProcessConsortium) -> None:
    consortium.stop_node("node-b")
    consortium.wait_online(["node-b"], online=False)
    params = {"sender": "node-a", "receiver": "node-b", "size_mb": 3}

    with consortium.client() as client:
        task_id = client.submit(COLLABORATION, "diagnostics.relay", params, nodes=["node-a", "node-b"])
        consortium.start_node("node-b")  # the chunks waited in the hub's mailbox
        client.wait(task_id, timeout_s=60)
        results = client.results(task_id).raise_for_errors()

    assert results.results[0].output is not None and results.results[1].output is not None
    assert results.results[0].output["sha256"] == results.results[1].output["sha256"]


async def test_a_node_refuses_a_group_the_researcher_did_not_address(consortium: InProcessConsortium) -> None:
    """A hub that hands node-a a two-node ring for a three-node task is refused."""
    alice = Kit.load(consortium.researcher_kit)
    config = load_node_config(consortium.local.node_config_path("node-a"))
    node_a = Kit.load(config.kit)
    node_b_cert = (consortium.local.kits / "nodes" / "node-b" / "cert.pem").read_text()
    request = TaskRequest(
        collaboration=COLLABORATION,
        algorithm="secure.ring_sum",
        params={"table": "patients", "column": "age"},
        nodes=["node-a", "node-b", "node-c"],
    )
    envelope = Envelope.new(MessageKind.TASK_INPUT, "alice", "node-a", task_id="t-shrunk")
    sealed = seal_envelope(
        envelope, request.model_dump_json().encode(), alice.identity, node_a.public
    ).encode()
    outcome: list[TaskOutcome] = []
    done = asyncio.Event()

    async def shrinking_hub(conn: MemoryConnection) -> None:
        await conn.recv()  # HELLO
        await conn.send(
            encode_control(
                Welcome(node_id="node-a", collaborations=[], heartbeat_s=20), HUB, "node-a"
            ).encode()
        )
        assignment = RunAssignment(
            run_id="t-shrunk-node-a",
            task_id="t-shrunk",
            collaboration_id=COLLABORATION,
            researcher_id="alice",
            algorithm="secure.ring_sum",
            researcher_certificate=(consortium.researcher_kit / "cert.pem").read_text(),
            peers={"node-b": node_b_cert},
        )
        await conn.send(encode_control(assignment, HUB, "node-a", sealed, "t-shrunk").encode())
        while not outcome:
            frame = Envelope.decode(await conn.recv())
            if frame.kind is MessageKind.RUN_STATUS:
                update, attachment = decode_control(frame, RunStatusUpdate)
                if update.status == "failed":
                    result = open_envelope(
                        Envelope.decode(attachment),
                        me=alice.identity,
                        sender=node_a.public,
                        guard=MemoryReplayGuard(),
                    )
                    outcome.append(TaskOutcome.model_validate_json(result))
        done.set()

    agent = Agent(config, node_a, MemoryConnector(shrinking_hub), consortium.pools["node-a"])
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(done.wait(), 30)
    runner.cancel()

    assert "did not choose" in (outcome[0].error or "")
