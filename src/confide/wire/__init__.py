"""Wire format: the binary envelope every transport carries and the typed control messages.

- ``_envelope``: ``Envelope`` frame codec, ``seal_envelope`` / ``open_envelope``
- ``_messages``: control messages between node and hub (JSON in a length-prefixed body)
"""

from confide.wire._envelope import HUB, Envelope, Flags, MessageKind, open_envelope, seal_envelope
from confide.wire._messages import (
    Ack,
    ControlMessage,
    ErrorNotice,
    Heartbeat,
    Hello,
    RunAssignment,
    RunStatusUpdate,
    Welcome,
    decode_any,
    decode_control,
    encode_control,
)
from confide.wire._payloads import TaskOutcome, TaskRequest

__all__ = [
    "HUB",
    "Ack",
    "ControlMessage",
    "Envelope",
    "ErrorNotice",
    "Flags",
    "Heartbeat",
    "Hello",
    "MessageKind",
    "RunAssignment",
    "RunStatusUpdate",
    "TaskOutcome",
    "TaskRequest",
    "Welcome",
    "decode_any",
    "decode_control",
    "encode_control",
    "open_envelope",
    "seal_envelope",
]
