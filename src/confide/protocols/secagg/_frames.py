"""Secure-aggregation messages in envelopes between a node and the hub (the server).

A message is cut into chunks of at most 1 MiB, each one ``AGGREGATION`` envelope with
its index and the chunk count in the header and a 16-byte message id plus the chunk in
the body, so a 32 MB masked vector never needs one giant frame. A node's messages carry
the round's configuration in front (the hub has no other way to learn it: the task's
parameters are sealed to the nodes), and the hub checks it against the task.

These bodies are not sealed: the server must read them, and they hold only what the
protocol lets the server see (signed public keys, sealed shares, masked vectors). The
hub connection's TLS protects them in transit.
"""

from __future__ import annotations

import json
import secrets
import struct
from dataclasses import dataclass, field

from confide._errors import ProtocolError
from confide.protocols.secagg._config import SecAggConfig
from confide.wire import Envelope, MessageKind

__all__ = ["CHUNK", "Assembler", "config_fields", "config_from_fields", "frames_of"]

CHUNK = 1024 * 1024
_LEN = struct.Struct(">I")
_ID = 16
MAX_MESSAGE = 1 << 31  # 4M x 64-bit values is 32 MiB; anything near 2 GiB is refused


def config_fields(config: SecAggConfig) -> dict[str, object]:
    """The configuration as JSON-able fields."""
    return {
        "session": config.session,
        "nodes": list(config.nodes),
        "length": config.length,
        "bits": config.bits,
        "threshold": config.threshold,
        "degree": config.degree,
        "researcher": config.researcher,
        "masked": config.masked,
    }


def config_from_fields(fields: object) -> SecAggConfig:
    """Parse :func:`config_fields`; :class:`ProtocolError` says what is wrong."""
    if not isinstance(fields, dict):
        raise ProtocolError("the round configuration must be an object")
    try:
        return SecAggConfig(
            session=str(fields["session"]),
            nodes=tuple(str(n) for n in fields["nodes"]),
            length=int(fields["length"]),
            bits=int(fields["bits"]),
            threshold=int(fields["threshold"]),
            degree=int(fields["degree"]),
            researcher=None if fields.get("researcher") is None else str(fields["researcher"]),
            masked=bool(fields.get("masked", True)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"the round configuration is malformed ({exc!r})") from None


def frames_of(
    message: bytes, *, sender: str, recipient: str, task_id: str, config: SecAggConfig | None
) -> list[Envelope]:
    """The envelopes of one encoded message; with ``config``, the configuration goes first."""
    header = b""
    if config is not None:
        encoded = json.dumps(config_fields(config), separators=(",", ":")).encode()
        header = _LEN.pack(len(encoded)) + encoded
    data = header + message
    message_id = secrets.token_bytes(_ID)
    count = max(1, -(-len(data) // CHUNK))
    return [
        Envelope.new(
            MessageKind.AGGREGATION,
            sender,
            recipient,
            message_id + data[i * CHUNK : (i + 1) * CHUNK],
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


class Assembler:
    """Puts messages back together, per sender, from their chunks (which arrive in order)."""

    def __init__(self, *, with_config: bool) -> None:
        self._with_config = with_config
        self._partial: dict[tuple[str, bytes], _Partial] = {}

    def add(self, envelope: Envelope) -> tuple[SecAggConfig | None, bytes] | None:
        """Take one chunk; return ``(config, message)`` once a message is whole."""
        if envelope.kind is not MessageKind.AGGREGATION or len(envelope.body) < _ID:
            raise ProtocolError(f"not a secure-aggregation frame: {envelope.kind.name}")
        key = (envelope.sender, envelope.body[:_ID])
        partial = self._partial.setdefault(key, _Partial(envelope.chunk_count))
        if envelope.chunk_index != len(partial.parts) or envelope.chunk_count != partial.count:
            del self._partial[key]
            raise ProtocolError(
                f"secure-aggregation message from {envelope.sender!r}: chunk {envelope.chunk_index} of "
                f"{envelope.chunk_count} arrived out of order; the message is dropped"
            )
        partial.parts.append(envelope.body[_ID:])
        partial.size += len(envelope.body) - _ID
        if partial.size > MAX_MESSAGE:
            del self._partial[key]
            raise ProtocolError(f"secure-aggregation message from {envelope.sender!r} is too large")
        if len(partial.parts) < partial.count:
            return None
        del self._partial[key]
        data = b"".join(partial.parts)
        if not self._with_config:
            return None, data
        if len(data) < _LEN.size:
            raise ProtocolError(
                f"secure-aggregation message from {envelope.sender!r} lacks its configuration"
            )
        (size,) = _LEN.unpack_from(data)
        try:
            fields = json.loads(data[_LEN.size : _LEN.size + size])
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProtocolError(
                f"secure-aggregation message from {envelope.sender!r}: the configuration is not JSON"
            ) from None
        return config_from_fields(fields), data[_LEN.size + size :]

    def forget(self, sender: str) -> None:
        """Drop ``sender``'s unfinished messages (it disconnected)."""
        for key in [k for k in self._partial if k[0] == sender]:
            del self._partial[key]
