"""Wire format: everything that travels between parties, and how it is checked.

- ``_envelope``: ``Envelope`` frame codec, ``seal_envelope`` / ``open_envelope``
- ``_status``: ``RunStatus`` and ``TaskStatus``, the statuses every party speaks
- ``_messages``: control messages between node and hub (JSON in a length-prefixed body)
- ``_payloads``: what researchers and nodes seal to each other
- ``_chunks``: a large message cut into chunk envelopes, and reassembled
- ``_rest``: the JSON answers of the hub's researcher REST API
- ``_aggregate``: a secure-aggregation round's outcome (binary answer of the REST API)
- ``_validation``: a value that does not fit a model becomes a ``WireError`` naming the field
"""

from confide.wire._aggregate import AggregateMeta, RoundConfigFields, decode_aggregate, encode_aggregate
from confide.wire._chunks import CHUNK_SIZE, MAX_CHUNKED_SIZE, ChunkAssembler, chunk_frames
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
from confide.wire._padding import padded_size
from confide.wire._payloads import TaskOutcome, TaskRequest
from confide.wire._rest import CollaborationOut, NodeOut, ResultOut, RunOut, TaskOut, TaskSummary, WhoAmI
from confide.wire._status import RunStatus, TaskStatus
from confide.wire._validation import validate_as

__all__ = [
    "CHUNK_SIZE",
    "HUB",
    "MAX_CHUNKED_SIZE",
    "Ack",
    "AggregateMeta",
    "ChunkAssembler",
    "CollaborationOut",
    "ControlMessage",
    "Envelope",
    "ErrorNotice",
    "Flags",
    "Heartbeat",
    "Hello",
    "MessageKind",
    "NodeOut",
    "ResultOut",
    "RoundConfigFields",
    "RunAssignment",
    "RunOut",
    "RunStatus",
    "RunStatusUpdate",
    "TaskOut",
    "TaskOutcome",
    "TaskRequest",
    "TaskStatus",
    "TaskSummary",
    "Welcome",
    "WhoAmI",
    "chunk_frames",
    "decode_aggregate",
    "decode_any",
    "decode_control",
    "encode_aggregate",
    "encode_control",
    "open_envelope",
    "padded_size",
    "seal_envelope",
    "validate_as",
]
