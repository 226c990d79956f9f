"""The one binary frame every transport carries, and sealing of its body.

Layout (big-endian)::

    magic "CF" | version u8 | kind u8 | flags u8 | reserved u8
    message_id 16 B | seq u64 | chunk_index u32 | chunk_count u32 | timestamp_ms u64
    task_id  u16 length + UTF-8
    sender   u8 length + UTF-8
    recipient u8 length + UTF-8
    body     u32 length + bytes

Everything before the body length is the *header*; for a sealed envelope the header is
bound into the HPKE key schedule and signed (see ``confide.crypto._seal``), and the body
is ``u32 ciphertext length | ciphertext | 64-byte Ed25519 signature``; the plaintext is
padded to a size bucket first (``Flags.PADDED``, :mod:`confide.wire._padding`). No pickle, no
eval: a frame is parsed field by field and rejected with a :class:`WireError` naming the
field when it does not fit.
"""

from __future__ import annotations

import enum
import secrets
import struct
import time
from dataclasses import dataclass, replace

from confide._errors import WireError
from confide.crypto import (
    SIGNATURE_SIZE,
    PartyIdentity,
    PublicParty,
    ReplayGuard,
    SealedBody,
    open_sealed,
    seal,
)
from confide.wire._padding import pad, unpad

__all__ = ["Envelope", "Flags", "MessageKind", "open_envelope", "seal_envelope"]

MAGIC = b"CF"
VERSION = 1
HUB = "hub"
_FIXED = struct.Struct(">2sBBBB16sQIIQ")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
MAX_BODY = 64 * 1024 * 1024


class MessageKind(enum.IntEnum):
    """What a frame is; the hub routes on this and never on the sealed body."""

    HELLO = 1
    WELCOME = 2
    RUN = 3
    RUN_STATUS = 4
    ACK = 5
    HEARTBEAT = 6
    ERROR = 7
    TASK_INPUT = 16
    TASK_RESULT = 17
    PEER = 18  # node -> node within a task, sealed end to end, relayed by the hub
    PEER_CHUNK = 19  # one 1 MiB chunk of a node -> node stream (AES-GCM under a sealed key)
    AGGREGATION = 20  # node <-> hub: one chunk of a secure-aggregation message (hub is the server)


class Flags(enum.IntFlag):
    """Frame flags."""

    NONE = 0
    FINAL = 1
    SEALED = 2
    PADDED = 4
    """The sealed plaintext is padded to a size bucket (:mod:`confide.wire._padding`)."""


@dataclass(frozen=True)
class Envelope:
    """One frame: typed header fields and a body (sealed or a control payload)."""

    kind: MessageKind
    sender: str
    recipient: str
    body: bytes = b""
    task_id: str = ""
    message_id: bytes = b"\0" * 16
    seq: int = 0
    chunk_index: int = 0
    chunk_count: int = 1
    timestamp_ms: int = 0
    flags: Flags = Flags.FINAL

    @classmethod
    def new(cls, kind: MessageKind, sender: str, recipient: str, body: bytes = b"", **kw: object) -> Envelope:
        """A frame with a fresh random message id and the current time."""
        return cls(
            kind=kind,
            sender=sender,
            recipient=recipient,
            body=body,
            message_id=secrets.token_bytes(16),
            timestamp_ms=time.time_ns() // 1_000_000,
            **kw,  # type: ignore[arg-type]
        )

    @property
    def sealed(self) -> bool:
        """Whether the body is sealed end to end."""
        return bool(self.flags & Flags.SEALED)

    def header_bytes(self) -> bytes:
        """The encoded header: what sealing binds and signs."""
        task = self.task_id.encode()
        sender = self.sender.encode()
        recipient = self.recipient.encode()
        if len(task) > 0xFFFF or len(sender) > 0xFF or len(recipient) > 0xFF:
            raise WireError("task id, sender or recipient too long for the envelope header")
        if len(self.message_id) != 16:
            raise WireError(f"message id must be 16 bytes, not {len(self.message_id)}")
        try:
            fixed = _FIXED.pack(
                MAGIC,
                VERSION,
                int(self.kind),
                int(self.flags),
                0,
                self.message_id,
                self.seq,
                self.chunk_index,
                self.chunk_count,
                self.timestamp_ms,
            )
        except struct.error:
            raise WireError("seq, chunk or timestamp field out of range for the envelope header") from None
        return b"".join(
            (
                fixed,
                _U16.pack(len(task)),
                task,
                _U8.pack(len(sender)),
                sender,
                _U8.pack(len(recipient)),
                recipient,
            )
        )

    def encode(self) -> bytes:
        """The whole frame."""
        return b"".join((self.header_bytes(), _U32.pack(len(self.body)), self.body))

    @classmethod
    def decode(cls, frame: bytes) -> Envelope:
        """Parse a frame; raise :class:`WireError` naming what does not fit."""
        view = memoryview(frame)
        if len(view) < _FIXED.size:
            raise WireError(f"frame of {len(view)} bytes is shorter than an envelope header")
        magic, version, kind, flags, reserved, mid, seq, cidx, ccount, ts = _FIXED.unpack_from(view)
        if reserved != 0:
            raise WireError("reserved header byte is not zero")
        if magic != MAGIC:
            raise WireError("frame does not start with the confide magic bytes")
        if version != VERSION:
            raise WireError(f"envelope version {version} is not supported (this build speaks {VERSION})")
        try:
            message_kind = MessageKind(kind)
        except ValueError:
            raise WireError(f"unknown message kind {kind}") from None
        pos = _FIXED.size
        task, pos = _read_str(view, pos, _U16, "task id")
        sender, pos = _read_str(view, pos, _U8, "sender")
        recipient, pos = _read_str(view, pos, _U8, "recipient")
        if len(view) < pos + 4:
            raise WireError("frame ends before the body length")
        (blen,) = _U32.unpack_from(view, pos)
        pos += 4
        if len(view) != pos + blen:
            raise WireError(f"frame body is {len(view) - pos} bytes but the header says {blen}")
        return cls(
            kind=message_kind,
            sender=sender,
            recipient=recipient,
            body=bytes(view[pos:]),
            task_id=task,
            message_id=bytes(mid),
            seq=seq,
            chunk_index=cidx,
            chunk_count=ccount,
            timestamp_ms=ts,
            flags=Flags(flags),
        )


def seal_envelope(
    envelope: Envelope, plaintext: bytes, sender: PartyIdentity, recipient: PublicParty
) -> Envelope:
    """Return ``envelope`` with ``plaintext`` sealed to ``recipient`` as its body."""
    if envelope.sender != sender.party_id or envelope.recipient != recipient.party_id:
        raise WireError("envelope sender/recipient do not match the sealing parties")
    header_env = replace(envelope, flags=envelope.flags | Flags.SEALED | Flags.PADDED, body=b"")
    header = header_env.header_bytes()
    sealed = seal(pad(plaintext), header=header, sender=sender, recipient=recipient)
    body = _U32.pack(len(sealed.ciphertext)) + sealed.ciphertext + sealed.signature
    return replace(header_env, body=body)


def open_envelope(
    envelope: Envelope,
    *,
    me: PartyIdentity,
    sender: PublicParty,
    guard: ReplayGuard,
    max_age_ms: int | None = None,
) -> bytes:
    """Open a sealed envelope addressed to ``me`` from the certified ``sender``."""
    if not envelope.sealed:
        raise WireError(f"a {envelope.kind.name} envelope from {envelope.sender!r} is not sealed")
    if envelope.sender != sender.party_id:
        raise WireError(
            f"envelope names {envelope.sender!r} as sender but is checked against {sender.party_id!r}"
        )
    body = envelope.body
    if len(body) < 4 + SIGNATURE_SIZE:
        raise WireError("sealed body is too short")
    (clen,) = _U32.unpack_from(body)
    if len(body) != 4 + clen + SIGNATURE_SIZE:
        raise WireError("sealed body length does not match its ciphertext length")
    sealed = SealedBody(ciphertext=body[4 : 4 + clen], signature=body[4 + clen :])
    kwargs = {} if max_age_ms is None else {"max_age_ms": max_age_ms}
    plaintext = open_sealed(
        sealed,
        header=replace(envelope, body=b"").header_bytes(),
        recipient_id=envelope.recipient,
        message_id=envelope.message_id,
        timestamp_ms=envelope.timestamp_ms,
        me=me,
        sender=sender,
        guard=guard,
        **kwargs,
    )
    # The flag is part of the sealed header: nobody on the path can add or remove it.
    return unpad(plaintext) if envelope.flags & Flags.PADDED else plaintext


def _read_str(view: memoryview, pos: int, size: struct.Struct, field: str) -> tuple[str, int]:
    if len(view) < pos + size.size:
        raise WireError(f"frame ends inside the {field} length")
    (n,) = size.unpack_from(view, pos)
    pos += size.size
    if len(view) < pos + n:
        raise WireError(f"frame ends inside the {field}")
    try:
        return bytes(view[pos : pos + n]).decode(), pos + n
    except UnicodeDecodeError:
        raise WireError(f"{field} is not valid UTF-8") from None
