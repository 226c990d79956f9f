"""Typed control messages between a node and the hub, carried in envelope bodies.

A control body is ``u32 JSON length | JSON | attachment``: the JSON is a pydantic model
chosen by the envelope's :class:`MessageKind`; the attachment is an opaque sealed
envelope (a task input going to a node, a result coming back) that the hub stores and
forwards without being able to open it.
"""

from __future__ import annotations

import struct
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from confide._errors import WireError
from confide.wire._envelope import Envelope, MessageKind
from confide.wire._status import RunStatus
from confide.wire._validation import field_error

__all__ = [
    "Ack",
    "ControlMessage",
    "ErrorNotice",
    "Heartbeat",
    "Hello",
    "RunAssignment",
    "RunStatusUpdate",
    "Welcome",
    "decode_control",
    "encode_control",
]

_U32 = struct.Struct(">I")
M = TypeVar("M", bound="ControlMessage")


class ControlMessage(BaseModel):
    """Base of the control messages: strict, frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Hello(ControlMessage):
    """First frame from a node: who it is and its credential."""

    node_id: str = Field(min_length=1, max_length=200)
    token: str = Field(min_length=1, max_length=500)
    software: str = ""


class Welcome(ControlMessage):
    """The hub's answer to a valid Hello."""

    node_id: str
    collaborations: list[str]
    heartbeat_s: float


class RunAssignment(ControlMessage):
    """A run for the node; the attachment is the task input sealed to the node."""

    run_id: str
    task_id: str
    collaboration_id: str
    researcher_id: str
    algorithm: str
    researcher_certificate: str
    peers: dict[str, str] = Field(default_factory=dict)  # node id -> certificate, for peer messages


class RunStatusUpdate(ControlMessage):
    """A node reports progress; a final status carries the sealed result as attachment.

    ``status`` is a :class:`RunStatus`; its plain value (``"running"``) validates too.
    """

    run_id: str
    status: RunStatus
    reason: str = Field(default="", max_length=500)


class Ack(ControlMessage):
    """Acknowledges a frame by message id (hex)."""

    message_id: str


class Heartbeat(ControlMessage):
    """Keeps the connection alive through proxies."""


class ErrorNotice(ControlMessage):
    """The hub or node tells the other side what went wrong with a frame."""

    code: str
    message: str


_BY_KIND: dict[MessageKind, type[ControlMessage]] = {
    MessageKind.HELLO: Hello,
    MessageKind.WELCOME: Welcome,
    MessageKind.RUN: RunAssignment,
    MessageKind.RUN_STATUS: RunStatusUpdate,
    MessageKind.ACK: Ack,
    MessageKind.HEARTBEAT: Heartbeat,
    MessageKind.ERROR: ErrorNotice,
}
_KIND_OF = {model: kind for kind, model in _BY_KIND.items()}


def encode_control(
    message: ControlMessage, sender: str, recipient: str, attachment: bytes = b"", task_id: str = ""
) -> Envelope:
    """Wrap a control message (and optional attachment) in a fresh envelope."""
    payload = message.model_dump_json().encode()
    body = _U32.pack(len(payload)) + payload + attachment
    return Envelope.new(_KIND_OF[type(message)], sender, recipient, body, task_id=task_id)


def decode_control(envelope: Envelope, expected: type[M]) -> tuple[M, bytes]:
    """Parse a control envelope as ``expected``; return the message and its attachment."""
    model = _BY_KIND.get(envelope.kind)
    if model is not expected:
        raise WireError(f"expected a {expected.__name__} frame, got {envelope.kind.name}")
    body = envelope.body
    if len(body) < 4:
        raise WireError(f"{envelope.kind.name} frame has no control payload")
    (n,) = _U32.unpack_from(body)
    if len(body) < 4 + n:
        raise WireError(f"{envelope.kind.name} control payload is truncated")
    try:
        message = expected.model_validate_json(body[4 : 4 + n])
    except ValidationError as exc:
        raise WireError(f"malformed {envelope.kind.name} message: {field_error(exc)}") from None
    return message, body[4 + n :]


def decode_any(envelope: Envelope) -> tuple[ControlMessage, bytes]:
    """Parse a control envelope as whatever its kind says."""
    model = _BY_KIND.get(envelope.kind)
    if model is None:
        raise WireError(f"{envelope.kind.name} is not a control message")
    return decode_control(envelope, model)
