"""The names ``confide.wire`` exports are its public API; changing them is deliberate."""

from __future__ import annotations

import confide.wire


def test_exported_names_are_pinned() -> None:
    exported = set(confide.wire.__all__)

    assert exported == {
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
    }
    assert all(hasattr(confide.wire, name) for name in exported)
