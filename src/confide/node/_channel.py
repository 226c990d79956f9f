"""The node-to-node channel of one task: sealed messages and streams between the task's nodes.

A multi-party algorithm ``send(peer, data)``s and ``await recv(peer)``s through it. Each
message is sealed end to end to the peer's certified key (checked against the consortium
CA) and signed by this node; the hub stores and forwards ciphertext and learns only sizes
and timing. Messages that arrive before this node has started its part of the task wait
in the run executor.

Large payloads go as a *stream* (``send_stream`` / ``recv_stream``): one sealed opening
message carries a fresh content key and the size, then 1 MiB chunks follow as AES-GCM
frames with their index and final flag bound in (:class:`~confide.crypto.StreamSealer`).
The chunks carry the payload padded to its size bucket (the true size is in the sealed
opening message), so the hub learns only the bucket. At most ``window`` chunks are
unacknowledged at a time, so neither this node nor the hub holds more than that in
flight; chunks resent after a reconnect are recognised and dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from confide._errors import AlgorithmError, ReplayError
from confide.crypto import (
    CHUNK_SIZE,
    MemoryReplayGuard,
    PartyIdentity,
    PublicParty,
    StreamKey,
    StreamOpener,
    StreamSealer,
)
from confide.wire import Envelope, Flags, MessageKind, open_envelope, padded_size, seal_envelope

__all__ = ["MAX_EARLY_CHUNKS", "PeerChannel", "ReliableSender"]

_MESSAGE = b"\x00"
_STREAM = b"\x01"
_SIZE = struct.Struct(">Q")
_KEY_BYTES = 48
MAX_EARLY_CHUNKS = 4096  # chunks held out of order before a stream is given up


class ReliableSender(Protocol):
    """Sends frames the hub acknowledges, resending them after a reconnect (the hub link)."""

    async def send_reliably(self, envelope: Envelope) -> asyncio.Event:
        """Send ``envelope``; the event is set when the hub acknowledges it."""
        ...


@dataclass
class _IncomingStream:
    """A stream being received: its opener and the chunks opened so far (None ends it)."""

    sender: str
    opener: StreamOpener
    size: int
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    # chunks that came ahead of their turn (e.g. out of a mailbox), by index
    early: dict[int, tuple[bytes, bool]] = field(default_factory=dict)


class PeerChannel:
    """Sealed messages and streams between this node and the other nodes of one task."""

    def __init__(
        self,
        *,
        task_id: str,
        identity: PartyIdentity,
        peers: Mapping[str, PublicParty],
        sender: ReliableSender,
        guard: MemoryReplayGuard,
        max_age_ms: int = 7 * 24 * 3600 * 1000,
    ) -> None:
        self._task_id = task_id
        self._identity = identity
        self._peers = dict(peers)
        self._sender = sender
        self._guard = guard
        self._max_age_ms = max_age_ms
        self._inbox: dict[str, asyncio.Queue[bytes]] = {}
        self._streams: dict[str, asyncio.Queue[_IncomingStream]] = {}
        self._open_streams: dict[bytes, _IncomingStream] = {}
        # chunks that overtook their stream's opening message, by stream id
        self._orphans: dict[bytes, list[Envelope]] = {}
        self._seq = itertools.count()

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._identity.party_id

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
        # The true size travels sealed; the chunks carry the data padded to its size bucket.
        await self._send_sealed(peer, _STREAM + stream.to_bytes() + _SIZE.pack(len(data)))
        data = data + bytes(padded_size(len(data)) - len(data))
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
            in_flight.append(await self._sender.send_reliably(envelope))

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
        if len(data) != padded_size(incoming.size):
            raise AlgorithmError(f"the stream from {peer!r} announced {incoming.size} bytes, got {len(data)}")
        return data[: incoming.size]

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

    def _peer(self, peer: str) -> PublicParty:
        party = self._peers.get(peer)
        if party is None:
            raise AlgorithmError(f"{peer!r} is not another node of task {self._task_id}")
        return party

    async def _send_sealed(self, peer: str, plaintext: bytes) -> asyncio.Event:
        party = self._peer(peer)
        envelope = Envelope.new(
            MessageKind.PEER, self.node_id, peer, task_id=self._task_id, seq=next(self._seq)
        )
        return await self._sender.send_reliably(seal_envelope(envelope, plaintext, self._identity, party))

    def _queue(self, peer: str) -> asyncio.Queue[bytes]:
        return self._inbox.setdefault(peer, asyncio.Queue())

    def _stream_queue(self, peer: str) -> asyncio.Queue[_IncomingStream]:
        return self._streams.setdefault(peer, asyncio.Queue())
