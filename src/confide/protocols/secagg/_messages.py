"""The messages of a secure-aggregation round and their binary form.

Client messages go from a node to the server (the hub), server messages back. One frame:
``kind (1 byte) | header length (4 bytes, big-endian) | JSON header | payload``; only a
masked input has a payload (the vector, little-endian). Every field is checked on
decoding, and a frame that does not parse is a :class:`ProtocolError` naming the field.
No pickle, no code from a peer.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from confide._errors import ProtocolError
from confide.protocols.secagg._config import SecAggConfig

__all__ = [
    "Abort",
    "Advertise",
    "ClientMessage",
    "Finished",
    "Keys",
    "MaskedInput",
    "MessageKind",
    "ServerMessage",
    "ShareKeys",
    "Shares",
    "Survivors",
    "Unmask",
    "Withdraw",
    "decode_message",
    "encode_message",
]

_HEAD = struct.Struct(">BI")
MAX_HEADER = 16 * 1024 * 1024


class MessageKind(enum.IntEnum):
    """What a frame carries; client kinds below 10, server kinds above."""

    ADVERTISE = 1
    SHARE_KEYS = 2
    MASKED_INPUT = 3
    UNMASK = 4
    WITHDRAW = 5
    KEYS = 11
    SHARES = 12
    SURVIVORS = 13
    FINISHED = 14
    ABORT = 15


@dataclass(frozen=True)
class Advertise:
    """Stage 0: a node's fresh mask key, signed with its identity key over the config digest."""

    node: str
    mask_key: bytes
    digest: bytes
    signature: bytes


@dataclass(frozen=True)
class ShareKeys:
    """Stage 1: a node's Shamir shares, sealed to each holder (recipient -> sealed body)."""

    node: str
    sealed: Mapping[str, bytes]


@dataclass(frozen=True)
class MaskedInput:
    """Stage 2: the masked vector, and the output-pad seed sealed to the researcher."""

    node: str
    vector: npt.NDArray[np.unsignedinteger[Any]]
    pad: bytes


@dataclass(frozen=True)
class Unmask:
    """Stage 3: shares of survivors' self-mask seeds and of dropped nodes' mask keys."""

    node: str
    self_shares: Mapping[str, bytes]
    key_shares: Mapping[str, bytes]


@dataclass(frozen=True)
class Withdraw:
    """A node declines the round before sending anything (e.g. its policy refuses the task)."""

    node: str
    reason: str


@dataclass(frozen=True)
class Keys:
    """The signed advertisements of a node's neighbours that took part."""

    adverts: tuple[Advertise, ...]


@dataclass(frozen=True)
class Shares:
    """The sealed shares addressed to one node (sender -> sealed body)."""

    sealed: Mapping[str, bytes]


@dataclass(frozen=True)
class Survivors:
    """Who sent a masked input (``survivors``) and who was dealt in but did not (``dropped``)."""

    survivors: tuple[str, ...]
    dropped: tuple[str, ...]


@dataclass(frozen=True)
class Finished:
    """The round is complete: the sum of these nodes' inputs was formed."""

    survivors: tuple[str, ...]


@dataclass(frozen=True)
class Abort:
    """The round failed; nothing was revealed."""

    reason: str


ClientMessage = Advertise | ShareKeys | MaskedInput | Unmask | Withdraw
ServerMessage = Keys | Shares | Survivors | Finished | Abort


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _advert_fields(advert: Advertise) -> dict[str, object]:
    return {
        "node": advert.node,
        "mask_key": _b64(advert.mask_key),
        "digest": _b64(advert.digest),
        "signature": _b64(advert.signature),
    }


def encode_message(message: ClientMessage | ServerMessage) -> bytes:
    """The frame of ``message``."""
    payload = b""
    header: dict[str, object]
    match message:
        case Advertise():
            kind, header = MessageKind.ADVERTISE, _advert_fields(message)
        case ShareKeys(node, sealed):
            kind, header = MessageKind.SHARE_KEYS, {"node": node, "sealed": _b64_map(sealed)}
        case MaskedInput(node, vector, pad):
            kind, header = MessageKind.MASKED_INPUT, {"node": node, "pad": _b64(pad)}
            payload = (
                np.ascontiguousarray(vector).astype(vector.dtype.newbyteorder("<"), copy=False).tobytes()
            )
        case Unmask(node, self_shares, key_shares):
            kind = MessageKind.UNMASK
            header = {"node": node, "self": _b64_map(self_shares), "key": _b64_map(key_shares)}
        case Withdraw(node, reason):
            kind, header = MessageKind.WITHDRAW, {"node": node, "reason": reason}
        case Keys(adverts):
            kind, header = MessageKind.KEYS, {"adverts": [_advert_fields(a) for a in adverts]}
        case Shares(sealed):
            kind, header = MessageKind.SHARES, {"sealed": _b64_map(sealed)}
        case Survivors(survivors, dropped):
            kind, header = MessageKind.SURVIVORS, {"survivors": list(survivors), "dropped": list(dropped)}
        case Finished(survivors):
            kind, header = MessageKind.FINISHED, {"survivors": list(survivors)}
        case Abort(reason):
            kind, header = MessageKind.ABORT, {"reason": reason}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return _HEAD.pack(kind, len(encoded)) + encoded + payload


def decode_message(frame: bytes, config: SecAggConfig) -> ClientMessage | ServerMessage:
    """Parse a frame of round ``config``; :class:`ProtocolError` names what is wrong."""
    if len(frame) < _HEAD.size:
        raise ProtocolError(f"a secure-aggregation frame is at least {_HEAD.size} bytes, not {len(frame)}")
    raw_kind, size = _HEAD.unpack_from(frame)
    try:
        kind = MessageKind(raw_kind)
    except ValueError:
        raise ProtocolError(f"unknown secure-aggregation message kind {raw_kind}") from None
    if size > MAX_HEADER or _HEAD.size + size > len(frame):
        raise ProtocolError(f"{kind.name} frame: header length {size} exceeds the frame")
    try:
        header = json.loads(frame[_HEAD.size : _HEAD.size + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{kind.name} frame: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"{kind.name} frame: header is not an object")
    payload = frame[_HEAD.size + size :]
    if payload and kind is not MessageKind.MASKED_INPUT:
        raise ProtocolError(f"{kind.name} frame carries {len(payload)} unexpected payload bytes")
    reader = _Header(kind, header)
    decoded: ClientMessage | ServerMessage = _DECODERS[kind](reader, payload, config)
    return decoded


class _Header:
    """Typed access to a decoded JSON header; errors name the message and the field."""

    def __init__(self, kind: MessageKind, fields: dict[str, Any]) -> None:
        self.kind = kind
        self.fields = fields

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        if not isinstance(value, str):
            raise ProtocolError(f"{self.kind.name} frame: field {name!r} must be a string")
        return value

    def raw(self, name: str, value: object = None) -> bytes:
        value = self.fields.get(name) if value is None else value
        if not isinstance(value, str):
            raise ProtocolError(f"{self.kind.name} frame: field {name!r} must be base64 text")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"{self.kind.name} frame: field {name!r} is not valid base64") from None

    def names(self, name: str) -> tuple[str, ...]:
        value = self.fields.get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProtocolError(f"{self.kind.name} frame: field {name!r} must be a list of node ids")
        return tuple(value)

    def mapping(self, name: str) -> dict[str, bytes]:
        value = self.fields.get(name)
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.kind.name} frame: field {name!r} must be an object")
        return {str(key): self.raw(f"{name}.{key}", item) for key, item in value.items()}

    def advert(self, fields: object) -> Advertise:
        if not isinstance(fields, dict):
            raise ProtocolError(f"{self.kind.name} frame: an advertisement must be an object")
        inner = _Header(self.kind, fields)
        return Advertise(
            inner.text("node"), inner.raw("mask_key"), inner.raw("digest"), inner.raw("signature")
        )


def _decode_masked(reader: _Header, payload: bytes, config: SecAggConfig) -> MaskedInput:
    dtype = np.dtype(f"<u{config.bits // 8}")
    if len(payload) != config.length * dtype.itemsize:
        raise ProtocolError(
            f"MASKED_INPUT frame: the vector is {len(payload)} bytes, but round {config.session} "
            f"sums {config.length} values of {config.bits} bits ({config.length * dtype.itemsize} bytes)"
        )
    vector = np.frombuffer(payload, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
    return MaskedInput(reader.text("node"), vector, reader.raw("pad"))


def _decode_keys(reader: _Header, payload: bytes, config: SecAggConfig) -> Keys:
    adverts = reader.fields.get("adverts")
    if not isinstance(adverts, list):
        raise ProtocolError("KEYS frame: field 'adverts' must be a list")
    return Keys(tuple(reader.advert(a) for a in adverts))


def _decode_abort(reader: _Header, payload: bytes, config: SecAggConfig) -> Abort:
    return Abort(reader.text("reason"))


_DECODERS: dict[MessageKind, Any] = {
    MessageKind.ADVERTISE: lambda r, p, c: r.advert(r.fields),
    MessageKind.SHARE_KEYS: lambda r, p, c: ShareKeys(r.text("node"), r.mapping("sealed")),
    MessageKind.MASKED_INPUT: _decode_masked,
    MessageKind.UNMASK: lambda r, p, c: Unmask(r.text("node"), r.mapping("self"), r.mapping("key")),
    MessageKind.WITHDRAW: lambda r, p, c: Withdraw(r.text("node"), r.text("reason")),
    MessageKind.KEYS: _decode_keys,
    MessageKind.SHARES: lambda r, p, c: Shares(r.mapping("sealed")),
    MessageKind.SURVIVORS: lambda r, p, c: Survivors(r.names("survivors"), r.names("dropped")),
    MessageKind.FINISHED: lambda r, p, c: Finished(r.names("survivors")),
    MessageKind.ABORT: _decode_abort,
}


def _b64_map(values: Mapping[str, bytes]) -> dict[str, str]:
    return {key: _b64(value) for key, value in sorted(values.items())}
