"""Messages too large for one frame, cut into chunk envelopes and put back together.

A message is cut into chunks of at most 1 MiB (:data:`CHUNK_SIZE`), each one envelope (of
kind ``AGGREGATION`` by default) with its index and the chunk count in the header and
``message id (16 random bytes) | chunk`` as its body, so a 32 MB vector never needs one
giant frame. The message may carry a small header blob in front, ``u32 length | header``
(big-endian), that the receiver gets back apart from the data; a secure-aggregation
message carries its round's configuration there.

These bodies are not sealed: they are for the hub to read, and the hub connection's TLS
protects them in transit. :class:`ChunkAssembler` takes chunks in order per sender and
message, refuses a chunk out of order and a message over :data:`MAX_CHUNKED_SIZE` bytes, and
raises :class:`WireError` saying which.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field

from confide._errors import WireError
from confide.wire._envelope import Envelope, MessageKind

__all__ = ["CHUNK_SIZE", "MAX_CHUNKED_SIZE", "ChunkAssembler", "chunk_frames"]

CHUNK_SIZE = 1024 * 1024
MAX_CHUNKED_SIZE = 1 << 31  # 4M x 64-bit values is 32 MiB; anything near 2 GiB is refused
_ID = 16
_LEN = struct.Struct(">I")


def chunk_frames(
    data: bytes,
    *,
    sender: str,
    recipient: str,
    task_id: str,
    header: bytes | None = None,
    kind: MessageKind = MessageKind.AGGREGATION,
) -> list[Envelope]:
    """The envelopes of one message; with ``header``, ``u32 length | header`` goes first."""
    whole = data if header is None else b"".join((_LEN.pack(len(header)), header, data))
    message_id = secrets.token_bytes(_ID)
    count = max(1, -(-len(whole) // CHUNK_SIZE))
    return [
        Envelope.new(
            kind,
            sender,
            recipient,
            message_id + whole[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE],
            task_id=task_id,
            chunk_index=i,
            chunk_count=count,
        )
        for i in range(count)
    ]


@dataclass
class _Partial:
    count: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


class ChunkAssembler:
    """Puts messages back together, per sender, from their chunks (which arrive in order).

    Parameters
    ----------
    with_header
        Whether the messages carry a header blob in front (:func:`chunk_frames`'
        ``header``); without, :meth:`add` returns ``b""`` as the header.
    kind
        The envelope kind the chunks must have.
    max_size
        The largest message taken, header included; a larger one is dropped.
    """

    def __init__(
        self,
        *,
        with_header: bool,
        kind: MessageKind = MessageKind.AGGREGATION,
        max_size: int = MAX_CHUNKED_SIZE,
    ) -> None:
        self._with_header = with_header
        self._kind = kind
        self._max_size = max_size
        self._partial: dict[tuple[str, bytes], _Partial] = {}

    def add(self, envelope: Envelope) -> tuple[bytes, bytes] | None:
        """Take one chunk; return ``(header, data)`` once its message is whole."""
        if envelope.kind is not self._kind or len(envelope.body) < _ID:
            raise WireError(
                f"not a chunk of kind {self._kind.name}: a {envelope.kind.name} frame "
                f"with a {len(envelope.body)}-byte body"
            )
        key = (envelope.sender, envelope.body[:_ID])
        partial = self._partial.setdefault(key, _Partial(envelope.chunk_count))
        if envelope.chunk_index != len(partial.parts) or envelope.chunk_count != partial.count:
            del self._partial[key]
            raise WireError(
                f"{self._kind.name} message from {envelope.sender!r}: chunk {envelope.chunk_index} of "
                f"{envelope.chunk_count} arrived out of order; the message is dropped"
            )
        partial.parts.append(envelope.body[_ID:])
        partial.size += len(envelope.body) - _ID
        if partial.size > self._max_size:
            del self._partial[key]
            raise WireError(f"{self._kind.name} message from {envelope.sender!r} is too large")
        if len(partial.parts) < partial.count:
            return None
        del self._partial[key]
        whole = b"".join(partial.parts)
        if not self._with_header:
            return b"", whole
        if len(whole) < _LEN.size:
            raise WireError(f"{self._kind.name} message from {envelope.sender!r} lacks its header")
        (size,) = _LEN.unpack_from(whole)
        if len(whole) < _LEN.size + size:
            raise WireError(f"{self._kind.name} message from {envelope.sender!r} ends inside its header")
        return whole[_LEN.size : _LEN.size + size], whole[_LEN.size + size :]

    def forget(self, sender: str) -> None:
        """Drop ``sender``'s unfinished messages (it disconnected)."""
        for key in [k for k in self._partial if k[0] == sender]:
            del self._partial[key]
