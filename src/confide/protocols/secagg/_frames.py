"""Secure-aggregation messages in envelopes between a node and the hub (the server).

Each encoded message is cut into ``AGGREGATION`` chunk envelopes by
:func:`confide.wire.chunk_frames` (1 MiB chunks, reassembled in order by
:class:`confide.wire.ChunkAssembler`), so a 32 MB masked vector never needs one giant
frame. A node's messages carry the round's configuration in front, as the header blob
(the hub has no other way to learn it: the task's parameters are sealed to the nodes),
and the hub checks it against the task; the hub's answers carry it back, so a node knows
which of its rounds a message is for.

These bodies are not sealed: the server must read them, and they hold only what the
protocol lets the server see (signed public keys, sealed shares, masked vectors). The
hub connection's TLS protects them in transit.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from confide._errors import ProtocolError, WireError
from confide.protocols.secagg._config import SecAggConfig
from confide.wire import ChunkAssembler, RoundConfigFields, chunk_frames, validate_as

if TYPE_CHECKING:
    from confide.wire import Envelope

__all__ = ["Assembler", "config_fields", "config_from_fields", "frames_of"]


def config_fields(config: SecAggConfig) -> dict[str, object]:
    """The configuration as JSON-able fields (a :class:`~confide.wire.RoundConfigFields`)."""
    fields = RoundConfigFields(
        session=config.session,
        nodes=config.nodes,
        length=config.length,
        bits=config.bits,
        threshold=config.threshold,
        degree=config.degree,
        researcher=config.researcher,
        masked=config.masked,
    )
    return fields.model_dump(mode="json")


def config_from_fields(fields: object) -> SecAggConfig:
    """Parse :func:`config_fields` (or a ``RoundConfigFields``); :class:`ProtocolError` says what is wrong."""
    if not isinstance(fields, dict | RoundConfigFields):
        raise ProtocolError("the round configuration must be an object")
    try:
        parsed = validate_as(RoundConfigFields, fields, what="the round configuration")
    except WireError as exc:
        raise ProtocolError(str(exc)) from None
    return SecAggConfig(
        session=parsed.session,
        nodes=parsed.nodes,
        length=parsed.length,
        bits=parsed.bits,
        threshold=parsed.threshold,
        degree=parsed.degree,
        researcher=parsed.researcher,
        masked=parsed.masked,
    )


def frames_of(
    message: bytes, *, sender: str, recipient: str, task_id: str, config: SecAggConfig | None
) -> list[Envelope]:
    """The envelopes of one encoded message; with ``config``, the configuration goes first."""
    header = None
    if config is not None:
        header = json.dumps(config_fields(config), separators=(",", ":")).encode()
    return chunk_frames(message, header=header, sender=sender, recipient=recipient, task_id=task_id)


class Assembler:
    """Puts messages back together, per sender, from their chunks (which arrive in order)."""

    def __init__(self, *, with_config: bool) -> None:
        self._with_config = with_config
        self._chunks = ChunkAssembler(with_header=with_config)

    def add(self, envelope: Envelope) -> tuple[SecAggConfig | None, bytes] | None:
        """Take one chunk; return ``(config, message)`` once a message is whole."""
        try:
            whole = self._chunks.add(envelope)
        except WireError as exc:
            raise ProtocolError(str(exc)) from None
        if whole is None:
            return None
        header, message = whole
        if not self._with_config:
            return None, message
        try:
            fields = json.loads(header)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProtocolError(
                f"secure-aggregation message from {envelope.sender!r}: the configuration is not JSON"
            ) from None
        return config_from_fields(fields), message

    def forget(self, sender: str) -> None:
        """Drop ``sender``'s unfinished messages (it disconnected)."""
        self._chunks.forget(sender)
