"""The names ``confide.wire`` exports are its public API; changing them is deliberate."""

from __future__ import annotations

import confide.wire


def test_exported_names_are_pinned() -> None:
    exported = set(confide.wire.__all__)

    assert exported == {
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
    }
    assert all(hasattr(confide.wire, name) for name in exported)


def test_the_hub_re_exports_the_wire_statuses() -> None:
    import confide.hub

    assert confide.hub.RunStatus is confide.wire.RunStatus
    assert confide.hub.TaskStatus is confide.wire.TaskStatus
