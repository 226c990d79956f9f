"""Typed control messages in envelope bodies (``confide.wire._messages``)."""

from __future__ import annotations

import dataclasses
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from confide._errors import WireError
from confide.wire import (
    HUB,
    Ack,
    ControlMessage,
    Envelope,
    ErrorNotice,
    Heartbeat,
    Hello,
    MessageKind,
    RunAssignment,
    RunStatusUpdate,
    Welcome,
    decode_any,
    decode_control,
    encode_control,
)

PROPERTY = settings(deadline=None, database=None)

EXAMPLES: list[tuple[ControlMessage, MessageKind]] = [
    (Hello(node_id="node-a", token="t" * 43, software="confide 0.1"), MessageKind.HELLO),
    (Welcome(node_id="node-a", collaborations=["c1", "c2"], heartbeat_s=15.0), MessageKind.WELCOME),
    (
        RunAssignment(
            run_id="r1",
            task_id="t1",
            collaboration_id="c1",
            researcher_id="alice",
            algorithm="stats.summary",
            researcher_certificate="-----BEGIN CERTIFICATE-----",
        ),
        MessageKind.RUN,
    ),
    (RunStatusUpdate(run_id="r1", status="completed", reason="ok"), MessageKind.RUN_STATUS),
    (Ack(message_id="00" * 16), MessageKind.ACK),
    (Heartbeat(), MessageKind.HEARTBEAT),
    (ErrorNotice(code="bad-frame", message="unknown kind"), MessageKind.ERROR),
]
IDS = [type(m).__name__ for m, _ in EXAMPLES]


def _with_payload(kind: MessageKind, payload: bytes, attachment: bytes = b"") -> Envelope:
    return Envelope.new(kind, "node-a", HUB, struct.pack(">I", len(payload)) + payload + attachment)


@pytest.mark.parametrize(("message", "kind"), EXAMPLES, ids=IDS)
def test_each_message_roundtrips_through_an_envelope(message: ControlMessage, kind: MessageKind) -> None:
    envelope = encode_control(message, "node-a", HUB, task_id="t1")

    decoded, attachment = decode_control(Envelope.decode(envelope.encode()), type(message))

    assert envelope.kind is kind
    assert (envelope.sender, envelope.recipient, envelope.task_id) == ("node-a", HUB, "t1")
    assert not envelope.sealed
    assert decoded == message
    assert attachment == b""


@pytest.mark.parametrize(("message", "kind"), EXAMPLES, ids=IDS)
def test_decode_any_picks_the_model_from_the_kind(message: ControlMessage, kind: MessageKind) -> None:
    envelope = encode_control(message, HUB, "node-a", attachment=b"\x00sealed\xff")

    decoded, attachment = decode_any(envelope)

    assert type(decoded) is type(message)
    assert decoded == message
    assert attachment == b"\x00sealed\xff"


def test_body_is_length_prefixed_json_then_attachment() -> None:
    envelope = encode_control(Ack(message_id="ab"), "node-a", HUB, attachment=b"ATT")

    (n,) = struct.unpack_from(">I", envelope.body)

    assert json.loads(envelope.body[4 : 4 + n]) == {"message_id": "ab"}
    assert envelope.body[4 + n :] == b"ATT"


@PROPERTY
@given(
    node_id=st.text(min_size=1, max_size=200),
    token=st.text(min_size=1, max_size=500),
    software=st.text(max_size=50),
    attachment=st.binary(max_size=256),
)
def test_hello_roundtrips_for_any_text(node_id: str, token: str, software: str, attachment: bytes) -> None:
    message = Hello(node_id=node_id, token=token, software=software)

    frame = encode_control(message, "node-a", HUB, attachment=attachment).encode()
    decoded, rest = decode_control(Envelope.decode(frame), Hello)

    assert (decoded, rest) == (message, attachment)


# -- refusals ---------------------------------------------------------------------------------


def test_wrong_expected_type_is_a_wire_error() -> None:
    envelope = encode_control(Heartbeat(), "node-a", HUB)

    with pytest.raises(WireError, match="expected a Hello frame, got HEARTBEAT"):
        decode_control(envelope, Hello)


def test_non_control_kind_is_a_wire_error() -> None:
    envelope = Envelope.new(MessageKind.TASK_INPUT, "alice", "node-a", b"\x00\x00\x00\x02{}")

    with pytest.raises(WireError, match="TASK_INPUT is not a control message"):
        decode_any(envelope)
    with pytest.raises(WireError, match="expected a Hello frame, got TASK_INPUT"):
        decode_control(envelope, Hello)


@pytest.mark.parametrize("payload", [b"{", b"not json", b"[]", b"null", b"\xff\xfe", b'{"node_id": '])
def test_malformed_json_is_a_wire_error(payload: bytes) -> None:
    envelope = _with_payload(MessageKind.HELLO, payload)

    with pytest.raises(WireError, match="malformed HELLO message"):
        decode_control(envelope, Hello)


def test_missing_field_is_a_wire_error_naming_it() -> None:
    envelope = _with_payload(MessageKind.HELLO, b'{"node_id": "node-a"}')

    with pytest.raises(WireError, match="malformed HELLO message: token: Field required"):
        decode_control(envelope, Hello)


def test_unknown_field_is_a_wire_error_naming_it() -> None:
    envelope = _with_payload(MessageKind.ACK, b'{"message_id": "ab", "admin": true}')

    with pytest.raises(WireError, match="malformed ACK message: admin: Extra inputs are not permitted"):
        decode_control(envelope, Ack)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"node_id": "", "token": "t"}', "node_id"),
        (b'{"node_id": "n", "token": ""}', "token"),
        (json.dumps({"node_id": "n" * 201, "token": "t"}).encode(), "node_id"),
        (json.dumps({"node_id": "n", "token": "t" * 501}).encode(), "token"),
    ],
)
def test_hello_field_limits_are_enforced(payload: bytes, field: str) -> None:
    envelope = _with_payload(MessageKind.HELLO, payload)

    with pytest.raises(WireError, match=f"malformed HELLO message: {field}"):
        decode_control(envelope, Hello)


def test_wrong_field_type_is_a_wire_error() -> None:
    envelope = _with_payload(
        MessageKind.WELCOME, b'{"node_id": "n", "collaborations": "c1", "heartbeat_s": 1}'
    )

    with pytest.raises(WireError, match="malformed WELCOME message: collaborations"):
        decode_control(envelope, Welcome)


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x00\x00"])
def test_body_without_a_payload_length_is_a_wire_error(body: bytes) -> None:
    envelope = Envelope.new(MessageKind.HEARTBEAT, "node-a", HUB, body)

    with pytest.raises(WireError, match="HEARTBEAT frame has no control payload"):
        decode_control(envelope, Heartbeat)


def test_truncated_payload_is_a_wire_error() -> None:
    envelope = encode_control(Ack(message_id="ab"), "node-a", HUB)
    truncated = dataclasses.replace(envelope, body=envelope.body[:-1])

    with pytest.raises(WireError, match="ACK control payload is truncated"):
        decode_control(truncated, Ack)


def test_messages_are_frozen() -> None:
    message = Ack(message_id="ab")

    with pytest.raises(ValidationError, match="frozen"):
        message.message_id = "cd"  # type: ignore[misc]


@PROPERTY
@given(
    kind=st.sampled_from(
        [
            MessageKind.HELLO,
            MessageKind.WELCOME,
            MessageKind.RUN,
            MessageKind.ACK,
            MessageKind.ERROR,
        ]
    ),
    body=st.binary(max_size=64) | st.binary(max_size=60).map(lambda b: struct.pack(">I", len(b)) + b),
)
def test_decoding_arbitrary_bodies_raises_only_wire_error(kind: MessageKind, body: bytes) -> None:
    envelope = Envelope.new(kind, "node-a", HUB, body)

    try:
        message, _ = decode_any(envelope)
    except WireError:
        return

    assert isinstance(message, ControlMessage)
