"""The binary envelope frame and sealing of its body (``confide.wire._envelope``)."""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confide._errors import (
    OpenError,
    ReplayError,
    StaleMessageError,
    TamperedError,
    WireError,
    WrongRecipientError,
)
from confide.crypto import MemoryReplayGuard, PartyIdentity, Role
from confide.crypto._seal import DEFAULT_MAX_AGE_MS, SIGNATURE_SIZE
from confide.wire import HUB, Envelope, Flags, MessageKind, open_envelope, seal_envelope

ALICE = PartyIdentity.generate("alice", "org-r", Role.RESEARCHER)
NODE_A = PartyIdentity.generate("node-a", "org-a", Role.NODE)
NODE_B = PartyIdentity.generate("node-b", "org-b", Role.NODE)
PROPERTY = settings(deadline=None, database=None)
FIXED_SIZE = 46  # magic..timestamp_ms


def _frame(
    *,
    magic: bytes = b"CF",
    version: int = 1,
    kind: int = MessageKind.HELLO,
    flags: int = 1,
    task: bytes = b"t-1",
    sender: bytes = b"node-a",
    recipient: bytes = b"hub",
    body: bytes = b"body",
    body_len: int | None = None,
) -> bytes:
    """Encode a frame by hand, so the decoder is checked against the documented layout."""
    return b"".join(
        (
            struct.pack(">2sBBBB16sQIIQ", magic, version, kind, flags, 0, b"\x11" * 16, 7, 1, 3, 1234),
            struct.pack(">H", len(task)),
            task,
            struct.pack(">B", len(sender)),
            sender,
            struct.pack(">B", len(recipient)),
            recipient,
            struct.pack(">I", len(body) if body_len is None else body_len),
            body,
        )
    )


def _utf8_up_to(limit: int) -> st.SearchStrategy[str]:
    """Text whose UTF-8 encoding fits in ``limit`` bytes, cut at a character boundary."""
    return st.text(max_size=limit).map(lambda s: s.encode()[:limit].decode("utf-8", "ignore"))


envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(MessageKind),
    sender=_utf8_up_to(255),
    recipient=_utf8_up_to(255),
    body=st.binary(max_size=512),
    task_id=_utf8_up_to(300),
    message_id=st.binary(min_size=16, max_size=16),
    seq=st.integers(0, 2**64 - 1),
    chunk_index=st.integers(0, 2**32 - 1),
    chunk_count=st.integers(0, 2**32 - 1),
    timestamp_ms=st.integers(0, 2**64 - 1),
    flags=st.sampled_from([Flags.NONE, Flags.FINAL, Flags.SEALED, Flags.FINAL | Flags.SEALED]),
)


def _decodes_or_wire_error(frame: bytes) -> Envelope | None:
    try:
        return Envelope.decode(frame)
    except WireError:
        return None


# -- codec ------------------------------------------------------------------------------------


def test_decode_reads_the_documented_layout() -> None:
    frame = _frame()

    envelope = Envelope.decode(frame)

    assert envelope == Envelope(
        kind=MessageKind.HELLO,
        sender="node-a",
        recipient="hub",
        body=b"body",
        task_id="t-1",
        message_id=b"\x11" * 16,
        seq=7,
        chunk_index=1,
        chunk_count=3,
        timestamp_ms=1234,
        flags=Flags.FINAL,
    )
    assert envelope.encode() == frame


def test_header_is_everything_before_the_body_length() -> None:
    envelope = Envelope.decode(_frame(body=b"xyz"))

    header = envelope.header_bytes()

    assert envelope.encode() == header + struct.pack(">I", 3) + b"xyz"
    assert len(header) == FIXED_SIZE + 2 + 3 + 1 + 6 + 1 + 3


def test_new_gives_a_fresh_id_and_the_current_time() -> None:
    before = time.time_ns() // 1_000_000

    first = Envelope.new(MessageKind.HEARTBEAT, "node-a", HUB, seq=4)
    second = Envelope.new(MessageKind.HEARTBEAT, "node-a", HUB)

    after = time.time_ns() // 1_000_000
    assert first.message_id != second.message_id
    assert len(first.message_id) == 16
    assert before <= first.timestamp_ms <= after
    assert first.seq == 4
    assert first.flags == Flags.FINAL
    assert not first.sealed


@PROPERTY
@given(envelope=envelopes)
def test_decode_inverts_encode(envelope: Envelope) -> None:
    frame = envelope.encode()

    decoded = Envelope.decode(frame)

    assert decoded == envelope


def test_longest_allowed_names_roundtrip() -> None:
    envelope = Envelope(MessageKind.RUN, "é" * 127 + "x", "n" * 255, task_id="t" * 0xFFFF)

    decoded = Envelope.decode(envelope.encode())

    assert decoded == envelope


@pytest.mark.parametrize(
    "fields",
    [{"sender": "s" * 256}, {"recipient": "é" * 128}, {"task_id": "t" * 0x10000}],
    ids=["sender", "recipient", "task_id"],
)
def test_encode_refuses_names_too_long_for_the_header(fields: dict[str, Any]) -> None:
    envelope = dataclasses.replace(Envelope(MessageKind.RUN, "a", "b"), **fields)

    with pytest.raises(WireError, match="too long for the envelope header"):
        envelope.encode()


# -- decode errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"", "frame of 0 bytes is shorter than an envelope header"),
        (_frame()[: FIXED_SIZE - 1], "shorter than an envelope header"),
        (_frame(magic=b"XX"), "magic"),
        (_frame(version=2), "envelope version 2 is not supported"),
        (_frame(version=0), "envelope version 0 is not supported"),
        (_frame(kind=0), "unknown message kind 0"),
        (_frame(kind=99), "unknown message kind 99"),
        (_frame()[: FIXED_SIZE + 1], "ends inside the task id length"),
        (_frame()[: FIXED_SIZE + 3], "ends inside the task id"),
        (_frame(task=b"")[: FIXED_SIZE + 2], "ends inside the sender length"),
        (_frame(task=b"")[: FIXED_SIZE + 4], "ends inside the sender"),
        (_frame(task=b"", sender=b"")[: FIXED_SIZE + 3], "ends inside the recipient length"),
        (_frame(task=b"", sender=b"")[: FIXED_SIZE + 4], "ends inside the recipient"),
        (
            _frame(task=b"", sender=b"", recipient=b"")[: FIXED_SIZE + 5],
            "ends before the body length",
        ),
        (_frame(body=b"abc", body_len=4), "frame body is 3 bytes but the header says 4"),
        (_frame(body=b"abc", body_len=2), "frame body is 3 bytes but the header says 2"),
        (_frame(task=b"\xff"), "task id is not valid UTF-8"),
        (_frame(sender=b"\xc3"), "sender is not valid UTF-8"),
        (_frame(recipient=b"\xed\xa0\x80"), "recipient is not valid UTF-8"),  # a surrogate
    ],
    ids=[
        "empty",
        "short-header",
        "magic",
        "version-2",
        "version-0",
        "kind-0",
        "kind-99",
        "task-length",
        "task",
        "sender-length",
        "sender",
        "recipient-length",
        "recipient",
        "body-length",
        "body-short",
        "body-long",
        "task-utf8",
        "sender-utf8",
        "recipient-utf8",
    ],
)
def test_bad_frame_is_a_wire_error_naming_the_problem(frame: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        Envelope.decode(frame)


def test_every_truncation_of_a_frame_is_a_wire_error() -> None:
    frame = _frame(body=b"0123456789")

    outcomes = [_decodes_or_wire_error(frame[:cut]) for cut in range(len(frame))]

    assert outcomes == [None] * len(frame)


def test_trailing_bytes_are_a_wire_error() -> None:
    with pytest.raises(WireError, match="header says"):
        Envelope.decode(_frame() + b"\x00")


@PROPERTY
@given(frame=st.binary(max_size=200) | st.binary(max_size=200).map(lambda b: b"CF\x01" + b))
def test_decoding_arbitrary_bytes_raises_only_wire_error(frame: bytes) -> None:
    decoded = _decodes_or_wire_error(frame)

    if decoded is not None:
        assert decoded.encode() == frame


@PROPERTY
@given(envelope=envelopes, data=st.data())
def test_decoding_a_corrupted_frame_raises_only_wire_error(envelope: Envelope, data: st.DataObject) -> None:
    frame = bytearray(envelope.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(frame) - 1))
        frame[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))

    decoded = _decodes_or_wire_error(bytes(frame[:cut]))

    assert decoded is None or isinstance(decoded, Envelope)


# -- sealing ----------------------------------------------------------------------------------


def _sealed(plaintext: bytes = b"task input", **fields: Any) -> Envelope:
    envelope = dataclasses.replace(
        Envelope.new(MessageKind.TASK_INPUT, "alice", "node-a", task_id="task-1", seq=2), **fields
    )
    return seal_envelope(envelope, plaintext, ALICE, NODE_A.public)


def _open(
    envelope: Envelope, *, me: PartyIdentity = NODE_A, sender: PartyIdentity = ALICE, **kw: Any
) -> bytes:
    guard = kw.pop("guard", None) or MemoryReplayGuard()
    return open_envelope(envelope, me=me, sender=sender.public, guard=guard, **kw)


def test_sealed_envelope_opens_to_the_plaintext() -> None:
    sealed = _sealed(b"the query")

    plaintext = _open(sealed)

    assert plaintext == b"the query"


def test_sealed_envelope_survives_the_wire() -> None:
    frame = _sealed(b"the query").encode()

    plaintext = _open(Envelope.decode(frame))

    assert plaintext == b"the query"


def test_sealing_sets_the_flag_and_frames_ciphertext_and_signature() -> None:
    plain = Envelope.new(MessageKind.TASK_INPUT, "alice", "node-a", body=b"ignored")

    sealed = seal_envelope(plain, b"x" * 10, ALICE, NODE_A.public)

    (clen,) = struct.unpack_from(">I", sealed.body)
    assert sealed.sealed
    assert sealed.flags == Flags.FINAL | Flags.SEALED | Flags.PADDED
    assert len(sealed.body) == 4 + clen + SIGNATURE_SIZE
    assert clen == 32 + 256 + 16  # 10 bytes padded to the smallest bucket
    assert dataclasses.replace(sealed, body=b"", flags=plain.flags) == dataclasses.replace(plain, body=b"")


@PROPERTY
@given(plaintext=st.binary(max_size=1024), task_id=_utf8_up_to(64), seq=st.integers(0, 2**64 - 1))
def test_open_envelope_inverts_seal_envelope(plaintext: bytes, task_id: str, seq: int) -> None:
    envelope = Envelope.new(MessageKind.TASK_RESULT, "alice", "node-a", task_id=task_id, seq=seq)

    frame = seal_envelope(envelope, plaintext, ALICE, NODE_A.public).encode()

    assert _open(Envelope.decode(frame)) == plaintext


@pytest.mark.parametrize(
    ("sender", "recipient"),
    [(NODE_B, NODE_A), (ALICE, NODE_B)],
    ids=["sender", "recipient"],
)
def test_seal_envelope_refuses_parties_not_named_in_the_header(
    sender: PartyIdentity, recipient: PartyIdentity
) -> None:
    envelope = Envelope.new(MessageKind.TASK_INPUT, "alice", "node-a")

    with pytest.raises(WireError, match="do not match the sealing parties"):
        seal_envelope(envelope, b"x", sender, recipient.public)


def test_unsealed_envelope_is_refused_by_open() -> None:
    envelope = Envelope.new(MessageKind.TASK_INPUT, "alice", "node-a", body=b"plain")

    with pytest.raises(WireError, match="TASK_INPUT envelope from 'alice' is not sealed"):
        _open(envelope)


def test_removing_the_sealed_flag_is_refused() -> None:
    sealed = _sealed()

    with pytest.raises(WireError, match="is not sealed"):
        _open(dataclasses.replace(sealed, flags=Flags.FINAL))


def test_opening_against_another_sender_than_named_is_refused() -> None:
    sealed = _sealed()

    with pytest.raises(WireError, match="names 'alice' as sender but is checked against 'node-b'"):
        _open(sealed, sender=NODE_B)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "too short"),
        (b"\x00" * (3 + SIGNATURE_SIZE), "too short"),
        (struct.pack(">I", 10) + b"\x00" * (9 + SIGNATURE_SIZE), "does not match"),
        (struct.pack(">I", 10) + b"\x00" * (11 + SIGNATURE_SIZE), "does not match"),
        (struct.pack(">I", 2**32 - 1) + b"\x00" * SIGNATURE_SIZE, "does not match"),
    ],
)
def test_malformed_sealed_body_is_a_wire_error(body: bytes, problem: str) -> None:
    sealed = _sealed()

    with pytest.raises(WireError, match=f"sealed body.*{problem}"):
        _open(dataclasses.replace(sealed, body=body))


ALTERATIONS: dict[str, Callable[[Envelope], Envelope]] = {
    "task_id": lambda e: dataclasses.replace(e, task_id="task-2"),
    "seq": lambda e: dataclasses.replace(e, seq=e.seq + 1),
    "kind-result": lambda e: dataclasses.replace(e, kind=MessageKind.TASK_RESULT),
    "kind-control": lambda e: dataclasses.replace(e, kind=MessageKind.RUN),
    "message_id": lambda e: dataclasses.replace(e, message_id=b"\x00" * 16),
    "chunk_index": lambda e: dataclasses.replace(e, chunk_index=1),
    "chunk_count": lambda e: dataclasses.replace(e, chunk_count=2),
    "flags": lambda e: dataclasses.replace(e, flags=Flags.SEALED),
    "timestamp": lambda e: dataclasses.replace(e, timestamp_ms=e.timestamp_ms + 1),
}


@pytest.mark.parametrize("alter", ALTERATIONS.values(), ids=ALTERATIONS.keys())
def test_altering_a_header_field_after_sealing_is_tampering(
    alter: Callable[[Envelope], Envelope],
) -> None:
    altered = alter(_sealed())

    with pytest.raises(TamperedError, match="'alice' was altered in transit"):
        _open(altered)


def test_readdressing_to_another_party_is_refused_by_both() -> None:
    readdressed = dataclasses.replace(_sealed(), recipient="node-b")

    with pytest.raises(WrongRecipientError, match="addressed to 'node-b'"):
        _open(readdressed, me=NODE_A)
    with pytest.raises(TamperedError):
        _open(readdressed, me=NODE_B)


def test_claiming_another_sender_is_refused() -> None:
    forged = dataclasses.replace(_sealed(), sender="node-b")

    with pytest.raises(TamperedError):
        _open(forged, sender=NODE_B)


def test_envelope_older_than_the_window_is_stale() -> None:
    sealed = _sealed(timestamp_ms=time.time_ns() // 1_000_000 - DEFAULT_MAX_AGE_MS - 60_000)

    with pytest.raises(StaleMessageError, match="s old"):
        _open(sealed)


def test_open_envelope_passes_a_custom_window_on() -> None:
    sealed = _sealed(timestamp_ms=time.time_ns() // 1_000_000 - 60_000)

    with pytest.raises(StaleMessageError, match="limit 30 s"):
        _open(sealed, max_age_ms=30_000)
    assert _open(sealed, max_age_ms=120_000) == b"task input"


def test_second_open_with_the_same_guard_is_a_replay() -> None:
    guard = MemoryReplayGuard()
    frame = _sealed().encode()
    _open(Envelope.decode(frame), guard=guard)

    with pytest.raises(ReplayError):
        _open(Envelope.decode(frame), guard=guard)


@PROPERTY
@given(data=st.data())
def test_no_single_bit_flip_of_a_sealed_frame_is_accepted(data: st.DataObject) -> None:
    frame = bytearray(_sealed(b"secret").encode())
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] ^= 1 << data.draw(st.integers(0, 7))

    with pytest.raises((WireError, OpenError)):
        _open(Envelope.decode(bytes(frame)))


def test_nonzero_reserved_byte_is_refused() -> None:
    frame = bytearray(Envelope.new(MessageKind.HEARTBEAT, "node-a", "hub").encode())
    frame[5] = 1

    with pytest.raises(WireError, match="reserved"):
        Envelope.decode(bytes(frame))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"message_id": b"short"}, "16 bytes"),
        ({"seq": -1}, "out of range"),
        ({"timestamp_ms": 2**64}, "out of range"),
    ],
)
def test_unencodable_fields_raise_wire_error(changes: dict[str, object], problem: str) -> None:
    envelope = dataclasses.replace(Envelope.new(MessageKind.HEARTBEAT, "node-a", "hub"), **changes)  # type: ignore[arg-type]

    with pytest.raises(WireError, match=problem):
        envelope.encode()
