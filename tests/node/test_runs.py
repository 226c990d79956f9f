"""The run executor's hold on peer messages that come before this node starts its part of a task."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from confide.node import _runs
from confide.node._runs import RunExecutor
from confide.wire import Envelope, Flags, MessageKind, RunAssignment, RunStatus


class Link:
    def __init__(self) -> None:
        self.acked: list[bytes] = []
        self.sent: list[Envelope] = []

    def acknowledge(self, envelope: Envelope) -> None:
        self.acked.append(envelope.message_id)

    async def send_reliably(self, envelope: Envelope) -> asyncio.Event:
        self.sent.append(envelope)
        return asyncio.Event()


def _executor(link: Link) -> RunExecutor:
    config = SimpleNamespace(workers=1)
    kit = SimpleNamespace(party_id="node-a")
    return RunExecutor(config, kit, link, steps=None, budget=None)  # type: ignore[arg-type]


def _peer(task_id: str) -> Envelope:
    return Envelope.new(MessageKind.PEER, "node-b", "node-a", b"sealed", task_id=task_id, flags=Flags.SEALED)


def test_early_messages_are_held_within_bounds_and_what_is_not_held_is_not_acknowledged(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_runs, "EARLY_KEPT", 2)
    monkeypatch.setattr(_runs, "EARLY_TASKS_KEPT", 1)
    link = Link()
    runs = _executor(link)
    held = [_peer("t1"), _peer("t1")]
    over, other_task = _peer("t1"), _peer("t2")

    for envelope in [*held, over, other_task]:
        runs.on_peer(envelope)

    assert link.acked == [e.message_id for e in held]  # the hub keeps the others for a reconnect


async def test_a_finished_run_frees_its_tasks_held_messages_and_later_ones_are_dropped() -> None:
    link = Link()
    runs = _executor(link)
    runs.on_peer(_peer("t1"))
    assignment = RunAssignment(
        run_id="r1",
        task_id="t1",
        collaboration_id="study",
        researcher_id="alice",
        algorithm="secure.ring_sum",
        researcher_certificate="",
    )

    await runs._final(assignment, RunStatus.FAILED, b"")
    late = _peer("t1")
    runs.on_peer(late)

    assert "t1" not in runs._early and link.acked[-1] == late.message_id
