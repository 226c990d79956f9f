"""The hub's peer relay: forward sealed messages, keep them in the mailbox only when it must."""

from __future__ import annotations

import asyncio

import pytest

from confide._errors import WireError
from confide.hub._memstore import MemoryStore
from confide.hub._relay import PeerRelay
from confide.wire import Ack, Envelope, Flags, MessageKind, decode_control

NODES = {"node-a", "node-b", "node-c"}


class Outbox:
    """A node's session as the relay sees it: records what it was sent."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.acks: list[str] = []
        self.acked = asyncio.Event()

    async def send(self, envelope: Envelope) -> None:
        ack, _ = decode_control(envelope, Ack)
        self.acks.append(ack.message_id)
        self.acked.set()

    async def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)


def _sealed(sender: str = "node-a", recipient: str = "node-b") -> Envelope:
    return Envelope.new(MessageKind.PEER, sender, recipient, b"ciphertext", task_id="t1", flags=Flags.SEALED)


async def _relay(online: dict[str, Outbox]) -> tuple[PeerRelay, MemoryStore]:
    store = MemoryStore()
    await store.initialise()
    return PeerRelay(store, online, mailbox_ttl_s=3600), store


async def test_a_message_to_an_offline_node_waits_in_the_mailbox_and_is_handed_over_in_order() -> None:
    sender = Outbox()
    relay, _ = await _relay({})
    first, second = _sealed(), _sealed()

    for envelope in (first, second):
        await relay.forward("node-a", sender, envelope, envelope.encode(), NODES)
    while len(sender.acks) < 2:
        sender.acked.clear()
        await sender.acked.wait()

    later = Outbox()
    await relay.hand_over("node-b", later)
    assert later.frames == [first.encode(), second.encode()]
    assert sender.acks == [first.message_id.hex(), second.message_id.hex()]


async def test_an_online_recipient_that_acknowledges_costs_no_mailbox_write() -> None:
    sender, recipient = Outbox(), Outbox()
    relay, store = await _relay({"node-b": recipient})
    envelope = _sealed()

    await relay.forward("node-a", sender, envelope, envelope.encode(), NODES)
    assert recipient.frames == [envelope.encode()]
    await relay.acknowledged("node-b", envelope.message_id.hex())
    await sender.acked.wait()

    assert await store.messages_for("node-b", 0, limit=10) == []


async def test_an_ack_that_beats_the_mailbox_write_keeps_the_message_out_of_it() -> None:
    sender = Outbox()
    relay, store = await _relay({})
    envelope = _sealed()

    await relay.acknowledged("node-b", envelope.message_id.hex())  # e.g. after a hub restart
    await relay.forward("node-a", sender, envelope, envelope.encode(), NODES)
    await sender.acked.wait()

    assert await store.messages_for("node-b", 0, limit=10) == []


@pytest.mark.parametrize(
    ("envelope", "why"),
    [
        (Envelope.new(MessageKind.PEER, "node-a", "node-b", b"plain", task_id="t1"), "must be sealed"),
        (_sealed(sender="node-c"), "must be sealed by node-a"),
        (_sealed(recipient="node-z"), "is not another node of task t1"),
        (_sealed(recipient="node-a"), "is not another node of task t1"),
    ],
)
async def test_the_relay_refuses_what_is_not_a_sealed_message_to_another_node_of_the_task(
    envelope: Envelope, why: str
) -> None:
    relay, _ = await _relay({})

    with pytest.raises(WireError, match=why):
        await relay.forward("node-a", Outbox(), envelope, envelope.encode(), NODES)
