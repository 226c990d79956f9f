"""The node-to-node channel of one task: sealed messages and streams between the task's nodes.

A multi-party algorithm (``Algorithm.protocol``) gets a :class:`TaskPeers`: it can
``send(peer, data)`` and ``await recv(peer)``. Each message is sealed end to end to the
peer's certified key (checked against the consortium CA) and signed by this node; the
hub stores and forwards ciphertext and learns only sizes and timing. Messages that
arrive before this node has started its part of the task wait in the agent.

Secure aggregation (``secure_sum``) runs this node's side of a round
(:mod:`confide.protocols.secagg`) against the hub, which is the round's server; each
stage's computation runs in a thread so that mask expansion never blocks the agent.

Large payloads go as a *stream* (``send_stream`` / ``recv_stream``): one sealed opening
message carries a fresh content key and the size, then 1 MiB chunks follow as AES-GCM
frames with their index and final flag bound in (``confide.crypto._stream``). At most
``window`` chunks are unacknowledged at a time, so neither this node nor the hub holds
more than that in flight; chunks resent after a reconnect are recognised and dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from confide._errors import AlgorithmError, PolicyError, ProtocolError, ReplayError
from confide.algorithms import MAIN_STEP, TrainingCost, TrainingSpend
from confide.crypto import (
    CHUNK_SIZE,
    MemoryReplayGuard,
    PartyIdentity,
    PublicParty,
    StreamKey,
    StreamOpener,
    StreamSealer,
)
from confide.node._worker import StepOutcome
from confide.protocols.secagg import (
    Assembler,
    ClientMessage,
    Contribution,
    MaskedInput,
    SecAggClient,
    SecAggConfig,
    ShareKeys,
    Withdraw,
    decode_message,
    encode_message,
    frames_of,
)
from confide.wire import HUB, Envelope, Flags, MessageKind, open_envelope, seal_envelope

__all__ = ["UNMASKED_ALLOWED", "TaskPeers"]

log = logging.getLogger("confide.node.peers")

# Algorithms whose vectors are synthetic (no patient data), so an unmasked baseline round
# reveals nothing; every other algorithm's rounds are masked, whatever it asks.
UNMASKED_ALLOWED = frozenset({"diagnostics.secure_sum"})

_MESSAGE = b"\x00"
_STREAM = b"\x01"
_SIZE = struct.Struct(">Q")
_KEY_BYTES = 48
MAX_EARLY_CHUNKS = 4096  # chunks held out of order before a stream is given up


@dataclass
class _IncomingStream:
    """A stream being received: its opener and the chunks opened so far (None ends it)."""

    sender: str
    opener: StreamOpener
    size: int
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    # chunks that came ahead of their turn (e.g. out of a mailbox), by index
    early: dict[int, tuple[bytes, bool]] = field(default_factory=dict)


class TaskPeers:
    """One task's peers, as a multi-party protocol sees them."""

    def __init__(
        self,
        *,
        task_id: str,
        identity: PartyIdentity,
        peers: Mapping[str, PublicParty],
        algorithm: str,
        run_local: Callable[[str, dict[str, object], str], Awaitable[StepOutcome]],
        send_frame: Callable[[Envelope], Awaitable[asyncio.Event]],
        guard: MemoryReplayGuard,
        max_age_ms: int = 7 * 24 * 3600 * 1000,
        researcher: PublicParty | None = None,
        send_now: Callable[[Envelope], Awaitable[None]] | None = None,
        disconnect: Callable[[], Awaitable[None]] | None = None,
        min_count: int = 5,
        charge: Callable[[str, float, float], Awaitable[None]] | None = None,
        charge_training: Callable[[str, str, int, TrainingCost], Awaitable[TrainingSpend]] | None = None,
    ) -> None:
        self._charge_training = charge_training
        self._min_count = min_count
        self._charge = charge
        self._disconnect = disconnect
        self._researcher = researcher
        self._send_now = send_now
        self._rounds: dict[str, asyncio.Queue[tuple[SecAggConfig, bytes]]] = {}
        self._traffic: dict[str, list[int]] = {}  # session -> [bytes sent, bytes received]
        self._assembler = Assembler(with_config=True)
        self._max_age_ms = max_age_ms
        self._task_id = task_id
        self._identity = identity
        self._peers = dict(peers)
        self._algorithm = algorithm
        self._run_local = run_local
        self._send_frame = send_frame
        self._guard = guard
        self._inbox: dict[str, asyncio.Queue[bytes]] = {}
        self._streams: dict[str, asyncio.Queue[_IncomingStream]] = {}
        self._open_streams: dict[bytes, _IncomingStream] = {}
        # chunks that overtook their stream's opening message, by stream id
        self._orphans: dict[bytes, list[Envelope]] = {}
        self._seq = itertools.count()

    @property
    def node_id(self) -> str:
        return self._identity.party_id

    @property
    def nodes(self) -> list[str]:
        return sorted({self.node_id, *self._peers})

    async def local(self, params: Mapping[str, object], step: str = MAIN_STEP) -> dict[str, object]:
        outcome = await self._run_local(self._algorithm, dict(params), step)
        if outcome.error is not None or outcome.output is None:
            raise AlgorithmError(outcome.error or f"{self._algorithm} produced no local figures")
        return outcome.output

    async def send(self, peer: str, data: bytes) -> None:
        await self._send_sealed(peer, _MESSAGE + data)

    async def recv(self, peer: str, timeout_s: float = 60.0) -> bytes:
        self._peer(peer)
        try:
            return await asyncio.wait_for(self._queue(peer).get(), timeout_s)
        except TimeoutError:
            raise AlgorithmError(
                f"no message from {peer!r} within {timeout_s:.0f} s: it may be offline, "
                "so this multi-party step cannot complete"
            ) from None

    async def send_stream(self, peer: str, data: bytes, *, window: int = 8) -> None:
        """Send a large payload to ``peer`` as a stream of sealed 1 MiB chunks."""
        stream = StreamKey.generate()
        await self._send_sealed(peer, _STREAM + stream.to_bytes() + _SIZE.pack(len(data)))
        sealer = StreamSealer(stream)
        offsets = range(0, max(len(data), 1), CHUNK_SIZE)
        in_flight: deque[asyncio.Event] = deque()
        for offset in offsets:
            final = offset + CHUNK_SIZE >= len(data)
            index, ciphertext = sealer.seal_chunk(data[offset : offset + CHUNK_SIZE], final=final)
            envelope = Envelope.new(
                MessageKind.PEER_CHUNK,
                self.node_id,
                peer,
                stream.stream_id + ciphertext,
                task_id=self._task_id,
                chunk_index=index,
                chunk_count=len(offsets),
                flags=Flags.SEALED | (Flags.FINAL if final else Flags.NONE),
            )
            while len(in_flight) >= window:
                await in_flight.popleft().wait()
            in_flight.append(await self._send_frame(envelope))

    async def recv_stream(self, peer: str, timeout_s: float = 60.0) -> bytes:
        """The next stream from ``peer``, whole; :class:`AlgorithmError` if it stalls."""
        self._peer(peer)
        parts: list[bytes] = []
        try:
            incoming = await asyncio.wait_for(self._stream_queue(peer).get(), timeout_s)
            while (chunk := await asyncio.wait_for(incoming.chunks.get(), timeout_s)) is not None:
                parts.append(chunk)
        except TimeoutError:
            raise AlgorithmError(f"the stream from {peer!r} stalled for {timeout_s:.0f} s") from None
        data = b"".join(parts)
        if len(data) != incoming.size:
            raise AlgorithmError(f"the stream from {peer!r} announced {incoming.size} bytes, got {len(data)}")
        return data

    async def secure_sum(
        self,
        values: npt.NDArray[np.unsignedinteger[Any]],
        *,
        label: str = "sum",
        bits: int = 64,
        threshold: int | None = None,
        timeout_s: float = 300.0,
        leave_after_input: bool = False,
        masked: bool = True,
    ) -> Contribution:
        """Add ``values`` (encoded in Z_2^bits) into this task's secure sum named ``label``.

        Every node of the task must call it with the same ``label``, length and width.
        The hub, as server, learns only the padded total; the researcher removes the
        pads. Returns who was summed; :class:`ProtocolError` if the round fails.
        ``leave_after_input`` drops the hub connection right after the masked input is
        sent, as a crashing node would (diagnostics of dropout recovery).
        """
        if self._send_now is None or self._researcher is None:
            raise ProtocolError("secure aggregation needs the hub connection and the researcher's key")
        if not masked and self._algorithm not in UNMASKED_ALLOWED:
            raise ProtocolError(
                f"{self._algorithm} asked for an unmasked round; only {sorted(UNMASKED_ALLOWED)} "
                "(synthetic vectors, no patient data) may send values in the clear"
            )
        config = SecAggConfig.create(
            f"{self._task_id}/{label}",
            self.nodes,
            int(values.size),
            bits=bits,
            threshold=threshold,
            researcher=self._researcher.party_id if masked else None,
            masked=masked,
        )
        parties = {**self._peers, self._researcher.party_id: self._researcher}
        client = SecAggClient(config, self._identity, parties, values)
        inbox = self._rounds.setdefault(config.session, asyncio.Queue())
        self._traffic[config.session] = [0, 0]
        try:
            reply: ClientMessage | None = client.start()
            preparing: asyncio.Future[None] | None = None
            while reply is not None or client.contribution is None:
                if reply is not None:
                    await self._to_hub(config, reply)
                    if isinstance(reply, ShareKeys):
                        # expand the masks while the hub gathers everyone's shares
                        preparing = asyncio.ensure_future(asyncio.to_thread(client.prepare_masks))
                    if leave_after_input and isinstance(reply, MaskedInput) and self._disconnect is not None:
                        await self._disconnect()
                        return Contribution(config.session, (), included=False)
                try:
                    got_config, data = await asyncio.wait_for(inbox.get(), timeout_s)
                except TimeoutError:
                    raise ProtocolError(
                        f"round {config.session}: no word from the hub within {timeout_s:.0f} s "
                        f"(at stage {client.stage.value}); the round is given up"
                    ) from None
                if got_config.digest != config.digest:
                    raise ProtocolError(f"round {config.session}: the hub answered for another configuration")
                message = decode_message(data, config)
                if preparing is not None:
                    await preparing
                    preparing = None
                reply = await asyncio.to_thread(client.handle, message)  # type: ignore[arg-type]
        finally:
            self._rounds.pop(config.session, None)
            sent, received = self._traffic.pop(config.session)
        if client.contribution is None:  # pragma: no cover - the loop ends only with one
            raise ProtocolError(f"round {config.session} ended without an outcome")
        return dataclasses.replace(client.contribution, bytes_sent=sent, bytes_received=received)

    async def withdraw_from_sum(
        self, length: int, reason: str, *, label: str = "sum", bits: int = 64, threshold: int | None = None
    ) -> None:
        """Tell the hub this node sits out round ``label`` (which it would have joined); log why."""
        if self._researcher is None:
            raise ProtocolError("secure aggregation needs the researcher's key")
        config = SecAggConfig.create(
            f"{self._task_id}/{label}",
            self.nodes,
            length,
            bits=bits,
            threshold=threshold,
            researcher=self._researcher.party_id,
        )
        # The hub reads this message: the reason (which may name a value of the node's data)
        # stays here and reaches the researcher only in the node's sealed result.
        log.info("sitting out secure sum %s: %s", label, reason)
        await self._to_hub(
            config, Withdraw(self.node_id, "declined; the researcher's sealed result says why")
        )

    @property
    def min_count(self) -> int:
        """The node policy's smallest number of rows a statistic may cover."""
        return self._min_count

    async def charge_privacy(self, dataset: str, epsilon: float, delta: float) -> None:
        """Spend (epsilon, delta) of the researcher's budget on ``dataset``; PolicyError past it."""
        if self._charge is None:
            raise PolicyError(f"node {self.node_id!r} keeps no privacy budget; it cannot run DP tasks")
        await self._charge(dataset, epsilon, delta)

    async def charge_training(
        self, dataset: str, job_id: str, round: int, cost: TrainingCost
    ) -> TrainingSpend:
        """Record one round of DP-SGD on ``dataset`` in the node's accountant; PolicyError past the budget."""
        if self._charge_training is None:
            raise PolicyError(f"node {self.node_id!r} keeps no privacy accountant; it cannot train")
        return await self._charge_training(dataset, job_id, round, cost)

    async def _to_hub(self, config: SecAggConfig, message: ClientMessage) -> None:
        if self._send_now is None:  # pragma: no cover - checked by secure_sum
            raise ProtocolError("no hub connection")
        data = await asyncio.to_thread(encode_message, message)
        for frame in frames_of(
            data, sender=self.node_id, recipient=HUB, task_id=self._task_id, config=config
        ):
            if config.session in self._traffic:
                self._traffic[config.session][0] += len(frame.body)
            await self._send_now(frame)

    def deliver_aggregation(self, envelope: Envelope) -> None:
        """A chunk of a message from the hub, the server of one of this task's rounds."""
        whole = self._assembler.add(envelope)
        if whole is None:
            return
        config, data = whole
        if config is None:  # pragma: no cover - the assembler always parses a configuration here
            return
        inbox = self._rounds.get(config.session)
        if inbox is None:
            raise ProtocolError(f"a message for round {config.session}, which this node is not in")
        if config.session in self._traffic:
            self._traffic[config.session][1] += len(data)
        inbox.put_nowait((config, data))

    def deliver(self, envelope: Envelope) -> None:
        """Open a peer message or stream chunk of this task and queue it; replays are dropped."""
        if envelope.kind is MessageKind.PEER_CHUNK:
            self._deliver_chunk(envelope)
            return
        sender = self._peer(envelope.sender)
        try:
            plaintext = open_envelope(
                envelope, me=self._identity, sender=sender, guard=self._guard, max_age_ms=self._max_age_ms
            )
        except ReplayError:
            return  # redelivered after a lost acknowledgement: already queued once
        kind, body = plaintext[:1], plaintext[1:]
        if kind == _STREAM:
            stream = StreamKey.from_bytes(body[:_KEY_BYTES])
            (size,) = _SIZE.unpack(body[_KEY_BYTES : _KEY_BYTES + _SIZE.size])
            incoming = _IncomingStream(envelope.sender, StreamOpener(stream), size)
            self._open_streams[stream.stream_id] = incoming
            self._stream_queue(envelope.sender).put_nowait(incoming)
            for orphan in self._orphans.pop(stream.stream_id, []):
                self._deliver_chunk(orphan)
        else:
            self._queue(envelope.sender).put_nowait(body)

    def _deliver_chunk(self, envelope: Envelope) -> None:
        stream_id = envelope.body[:16]
        incoming = self._open_streams.get(stream_id)
        if incoming is None:
            # Its opening message is still on the way (e.g. out of a mailbox): keep it.
            orphans = self._orphans.setdefault(stream_id, [])
            if len(orphans) >= MAX_EARLY_CHUNKS:
                raise AlgorithmError(f"stream chunks from {envelope.sender!r} belong to no open stream")
            orphans.append(envelope)
            return
        if incoming.sender != envelope.sender:
            raise AlgorithmError(f"stream chunk from {envelope.sender!r} belongs to another sender's stream")
        if envelope.chunk_index < incoming.opener.next_index:
            return  # resent after a reconnect: already delivered
        if len(incoming.early) > MAX_EARLY_CHUNKS:
            raise AlgorithmError(
                f"the stream from {envelope.sender!r} is missing chunk {incoming.opener.next_index}"
            )
        incoming.early[envelope.chunk_index] = (envelope.body[16:], bool(envelope.flags & Flags.FINAL))
        while (ready := incoming.early.pop(incoming.opener.next_index, None)) is not None:
            ciphertext, final = ready
            incoming.chunks.put_nowait(
                incoming.opener.open_chunk(incoming.opener.next_index, ciphertext, final=final)
            )
            if final:
                incoming.chunks.put_nowait(None)
                del self._open_streams[stream_id]
                return

    async def _send_sealed(self, peer: str, plaintext: bytes) -> asyncio.Event:
        party = self._peer(peer)
        envelope = Envelope.new(
            MessageKind.PEER, self.node_id, peer, task_id=self._task_id, seq=next(self._seq)
        )
        return await self._send_frame(seal_envelope(envelope, plaintext, self._identity, party))

    def _peer(self, peer: str) -> PublicParty:
        party = self._peers.get(peer)
        if party is None:
            raise AlgorithmError(f"{peer!r} is not another node of task {self._task_id}")
        return party

    def _queue(self, peer: str) -> asyncio.Queue[bytes]:
        return self._inbox.setdefault(peer, asyncio.Queue())

    def _stream_queue(self, peer: str) -> asyncio.Queue[_IncomingStream]:
        return self._streams.setdefault(peer, asyncio.Queue())
