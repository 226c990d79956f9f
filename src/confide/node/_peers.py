"""The node-to-node channel of one task: sealed messages between the task's nodes.

A multi-party algorithm (``Algorithm.protocol``) gets a :class:`TaskPeers`: it can
``send(peer, data)`` and ``await recv(peer)``. Each message is sealed end to end to the
peer's certified key (checked against the consortium CA) and signed by this node; the
hub stores and forwards ciphertext and learns only sizes and timing. Messages that
arrive before this node has started its part of the task wait in the agent.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping

from confide._errors import AlgorithmError, ReplayError
from confide.crypto import MemoryReplayGuard, PartyIdentity, PublicParty
from confide.node._worker import StepOutcome
from confide.wire import Envelope, MessageKind, open_envelope, seal_envelope

__all__ = ["TaskPeers"]


class TaskPeers:
    """One task's peers, as a multi-party protocol sees them."""

    def __init__(
        self,
        *,
        task_id: str,
        identity: PartyIdentity,
        peers: Mapping[str, PublicParty],
        algorithm: str,
        run_local: Callable[[str, dict[str, object]], Awaitable[StepOutcome]],
        send_frame: Callable[[Envelope], Awaitable[None]],
        guard: MemoryReplayGuard,
    ) -> None:
        self._task_id = task_id
        self._identity = identity
        self._peers = dict(peers)
        self._algorithm = algorithm
        self._run_local = run_local
        self._send_frame = send_frame
        self._guard = guard
        self._inbox: dict[str, asyncio.Queue[bytes]] = {}
        self._seq = itertools.count()

    @property
    def node_id(self) -> str:
        return self._identity.party_id

    @property
    def nodes(self) -> list[str]:
        return sorted({self.node_id, *self._peers})

    async def local(self, params: Mapping[str, object]) -> dict[str, object]:
        outcome = await self._run_local(self._algorithm, dict(params))
        if outcome.error is not None or outcome.output is None:
            raise AlgorithmError(outcome.error or f"{self._algorithm} produced no local figures")
        return outcome.output

    async def send(self, peer: str, data: bytes) -> None:
        party = self._peer(peer)
        envelope = Envelope.new(
            MessageKind.PEER, self.node_id, peer, task_id=self._task_id, seq=next(self._seq)
        )
        await self._send_frame(seal_envelope(envelope, data, self._identity, party))

    async def recv(self, peer: str, timeout_s: float = 60.0) -> bytes:
        self._peer(peer)
        try:
            return await asyncio.wait_for(self._queue(peer).get(), timeout_s)
        except TimeoutError:
            raise AlgorithmError(
                f"no message from {peer!r} within {timeout_s:.0f} s: it may be offline, "
                "so this multi-party step cannot complete"
            ) from None

    def deliver(self, envelope: Envelope) -> None:
        """Open a peer message of this task and queue it for ``recv``; replays are dropped."""
        sender = self._peer(envelope.sender)
        try:
            plaintext = open_envelope(envelope, me=self._identity, sender=sender, guard=self._guard)
        except ReplayError:
            return  # redelivered after a lost acknowledgement: already queued once
        self._queue(envelope.sender).put_nowait(plaintext)

    def _peer(self, peer: str) -> PublicParty:
        party = self._peers.get(peer)
        if party is None:
            raise AlgorithmError(f"{peer!r} is not another node of task {self._task_id}")
        return party

    def _queue(self, peer: str) -> asyncio.Queue[bytes]:
        return self._inbox.setdefault(peer, asyncio.Queue())
