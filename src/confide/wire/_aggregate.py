"""A secure-aggregation round's outcome as the researcher fetches it from the hub.

``GET /api/tasks/{id}/aggregates/{label}`` answers with bytes::

    u32 meta length (big-endian) | meta JSON (AggregateMeta) | padded total

The meta says whether the round ended well (``ok``, ``error``), the ring (``bits``) and
vector ``length``, the round's public configuration (``config``, a
:class:`RoundConfigFields`), the ``survivors`` summed and the nodes ``dropped``, and each
survivor's pad seed sealed to the researcher (``pads``, base64). The padded total is
``length`` little-endian unsigned integers of ``bits`` bits for a round that ended well,
and empty for one that failed; only the researcher can remove the pads.

The hub stores the meta as the JSON :meth:`AggregateMeta.to_json` writes (``json.dumps``:
``", "`` and ``": "`` separators, non-ASCII escaped) and answers with those same bytes.
:func:`decode_aggregate` checks every part and raises :class:`WireError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from confide._errors import WireError
from confide.wire._validation import field_error

__all__ = ["AggregateMeta", "RoundConfigFields", "decode_aggregate", "encode_aggregate"]

_U32 = struct.Struct(">I")


def _from_base64(value: object) -> bytes:
    if isinstance(value, bytes):  # built in Python: the raw bytes
        return value
    if isinstance(value, str):  # read from JSON: base64 text
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise ValueError("must be base64 text")


def _to_base64(value: bytes) -> str:
    return base64.b64encode(value).decode()


Base64 = Annotated[
    bytes,
    PlainValidator(_from_base64),
    PlainSerializer(_to_base64, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class RoundConfigFields(BaseModel):
    """A secure-aggregation round's public configuration, as it travels in JSON.

    The fields of ``protocols.secagg.SecAggConfig`` (which checks that they make a
    round); nodes send it in front of their aggregation messages, the hub echoes it, and
    the researcher reads it in :class:`AggregateMeta`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    session: str
    nodes: tuple[str, ...]
    length: int
    bits: int
    threshold: int
    degree: int
    researcher: str | None = None
    masked: bool = True


class AggregateMeta(BaseModel):
    """The JSON part of a round's outcome: how it ended, who was summed, the sealed pads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    error: str = ""
    bits: Literal[32, 64]
    length: int = Field(ge=1)
    config: RoundConfigFields
    survivors: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    pads: dict[str, Base64] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _agrees_with_its_config(self) -> AggregateMeta:
        if (self.bits, self.length) != (self.config.bits, self.config.length):
            raise ValueError(
                f"bits {self.bits} and length {self.length} differ from the config's "
                f"{self.config.bits} and {self.config.length}"
            )
        return self

    @property
    def total_size(self) -> int:
        """Bytes of the padded total that follows: none for a round that failed."""
        return self.length * self.bits // 8 if self.ok else 0

    def to_json(self) -> str:
        """The meta as the hub stores and sends it (``json.dumps`` of its JSON fields)."""
        return json.dumps(self.model_dump(mode="json"))


def encode_aggregate(meta: AggregateMeta, total: bytes) -> bytes:
    """The whole answer: meta length, meta JSON, padded total (little-endian)."""
    if len(total) != meta.total_size:
        raise WireError(f"the padded total is {len(total)} bytes, not the {meta.total_size} its meta says")
    encoded = meta.to_json().encode()
    return b"".join((_U32.pack(len(encoded)), encoded, total))


def decode_aggregate(data: bytes) -> tuple[AggregateMeta, bytes]:
    """Parse :func:`encode_aggregate`'s bytes into the meta and the padded total.

    Raises
    ------
    WireError
        The answer is truncated, its meta is not an :class:`AggregateMeta` (the error
        names the field), or the total's size disagrees with ``bits`` and ``length``.
    """
    if len(data) < _U32.size:
        raise WireError(f"aggregate answer of {len(data)} bytes ends inside its meta length")
    (size,) = _U32.unpack_from(data)
    if len(data) < _U32.size + size:
        raise WireError(f"aggregate answer ends inside its meta ({size} bytes announced)")
    try:
        meta = AggregateMeta.model_validate_json(data[_U32.size : _U32.size + size])
    except ValidationError as exc:
        raise WireError(f"aggregate meta is malformed: {field_error(exc)}") from None
    total = data[_U32.size + size :]
    if not meta.ok and total:
        raise WireError(f"a failed round has no padded total, but {len(total)} bytes follow its meta")
    if len(total) != meta.total_size:
        raise WireError(
            f"padded total is {len(total)} bytes; {meta.length} values of {meta.bits} bits "
            f"are {meta.total_size} bytes"
        )
    return meta, total
