"""The hub's store-and-forward relay of sealed node-to-node messages.

A multi-party algorithm's nodes talk through the hub (they dial out; none can reach
another). The relay checks only routing: the frame is sealed, comes from the node whose
session sent it, and goes to another node of the same task. It cannot read the message.

1. If the recipient is online, the frame is forwarded at once and the relay waits up to
   ``PEER_ACK_WAIT_S`` for the recipient's acknowledgement;
2. if the recipient is offline, slow or its link broke, the frame is written to the
   mailbox (kept until ``mailbox_ttl_s``) and handed over when the recipient next
   connects (:meth:`PeerRelay.hand_over`); an acknowledgement that beats the write is
   remembered, so the message is not stored for nothing;
3. only then is the sender acknowledged, so a message survives the recipient's absence
   and a hub restart (the sender resends what was never acknowledged), and an online
   pair costs no write at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Protocol

from confide._errors import ConflictError, TransportError, WireError
from confide.hub._records import MailboxMessage
from confide.hub._store import Store
from confide.wire import HUB, Ack, Envelope, encode_control

__all__ = ["Outbox", "PeerRelay"]

EARLY_ACKS_KEPT = 10_000
PEER_ACK_WAIT_S = 0.5  # how long a delivered peer message may wait for its ack before it is stored
MAILBOX_BATCH = 100_000  # messages handed over to a node that connects, at most


class Outbox(Protocol):
    """A connected node's session, as the relay sends to it."""

    async def send(self, envelope: Envelope) -> None:
        """Send a control frame."""
        ...

    async def send_frame(self, frame: bytes) -> None:
        """Send a frame as it came."""
        ...


class PeerRelay:
    """Forwards sealed peer messages between the nodes of a task, through the mailbox when it must."""

    def __init__(self, store: Store, online: Mapping[str, Outbox], mailbox_ttl_s: float) -> None:
        self._store = store
        self._online = online
        self._mailbox_ttl_s = mailbox_ttl_s
        self._awaiting: dict[str, asyncio.Event] = {}  # forwarded to an online recipient, not yet acked
        self._early_acks: dict[str, None] = {}  # acks that beat the mailbox write
        self._last_mailbox_ms = 0
        self._background: set[asyncio.Task[None]] = set()

    async def forward(
        self, sender: str, outbox: Outbox, envelope: Envelope, frame: bytes, nodes: set[str]
    ) -> None:
        """Steps 1-3 for one frame from ``sender`` within a task of ``nodes``."""
        if not envelope.sealed or envelope.sender != sender or sender not in nodes:
            raise WireError(f"a peer message must be sealed by {sender} within one of its tasks")
        if envelope.recipient not in nodes or envelope.recipient == sender:
            raise WireError(f"{envelope.recipient!r} is not another node of task {envelope.task_id}")
        # strictly increasing: the mailbox hands messages out in this order
        now = self._last_mailbox_ms = max(_now_ms(), self._last_mailbox_ms + 1)
        message = MailboxMessage(
            envelope.message_id.hex(),
            envelope.recipient,
            sender,
            envelope.task_id,
            frame,
            now,
            now + int(self._mailbox_ttl_s * 1000),
        )
        delivered: asyncio.Event | None = None
        recipient = self._online.get(envelope.recipient)
        if recipient is not None:
            delivered = self._awaiting.setdefault(message.id, asyncio.Event())
            try:
                await recipient.send_frame(frame)
            except TransportError:
                self._awaiting.pop(message.id, None)
                delivered = None
        # Make it safe and acknowledge the sender without holding up the sender's session.
        task = asyncio.create_task(self._make_safe(outbox, message, delivered))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def acknowledged(self, node_id: str, message_id: str) -> None:
        """``node_id`` acknowledged a relayed message: it leaves the mailbox (or is never written)."""
        waiting = self._awaiting.get(message_id)
        if waiting is not None:
            waiting.set()  # delivered while in flight: nothing was written
        elif not await self._store.delete_message(message_id, node_id):
            self._early_acks[message_id] = None
            while len(self._early_acks) > EARLY_ACKS_KEPT:
                self._early_acks.pop(next(iter(self._early_acks)))

    async def hand_over(self, node_id: str, outbox: Outbox) -> None:
        """Send a node that just connected the messages the mailbox kept for it, oldest first."""
        for message in await self._store.messages_for(node_id, _now_ms(), limit=MAILBOX_BATCH):
            await outbox.send_frame(message.envelope)

    async def _make_safe(
        self, outbox: Outbox, message: MailboxMessage, delivered: asyncio.Event | None
    ) -> None:
        try:
            if delivered is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(delivered.wait(), PEER_ACK_WAIT_S)
            # An ack that came before this write means the recipient has it already.
            safe = (delivered is not None and delivered.is_set()) or message.id in self._early_acks
            self._early_acks.pop(message.id, None)
            if not safe:
                with contextlib.suppress(ConflictError):  # a resend after a lost ack: stored already
                    await self._store.put_message(message)
        finally:
            self._awaiting.pop(message.id, None)
        # If the hub dies before this, the unacknowledged sender sends the message again.
        with contextlib.suppress(TransportError):
            await outbox.send(encode_control(Ack(message_id=message.id), HUB, message.sender))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
