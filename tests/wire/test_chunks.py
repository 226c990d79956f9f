"""Large messages cut into chunk envelopes and reassembled (``confide.wire._chunks``)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confide._errors import WireError
from confide.wire import CHUNK_SIZE, HUB, ChunkAssembler, Envelope, MessageKind, chunk_frames

PROPERTY = settings(deadline=None, database=None, max_examples=30)


def _frames(data: bytes, header: bytes | None = b"cfg", sender: str = "node-a") -> list[Envelope]:
    return chunk_frames(data, header=header, sender=sender, recipient=HUB, task_id="t1")


def _feed(assembler: ChunkAssembler, frames: list[Envelope]) -> tuple[bytes, bytes] | None:
    whole = None
    for frame in frames:
        assert whole is None, "a message was whole before its last chunk"
        whole = assembler.add(Envelope.decode(frame.encode()))
    return whole


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(0, 1), (10, 1), (CHUNK_SIZE - 7, 1), (CHUNK_SIZE - 6, 2), (3 * CHUNK_SIZE, 4)],
)
def test_a_message_is_cut_into_1_mib_chunks_with_its_header_in_front(size: int, chunks: int) -> None:
    data = bytes(i % 251 for i in range(size))

    frames = _frames(data, header=b"cfg")  # 4 + 3 header bytes in front of the data

    assert len(frames) == chunks
    assert [(f.chunk_index, f.chunk_count) for f in frames] == [(i, chunks) for i in range(chunks)]
    assert {(f.kind, f.sender, f.recipient, f.task_id) for f in frames} == {
        (MessageKind.AGGREGATION, "node-a", HUB, "t1")
    }
    assert len({f.body[:16] for f in frames}) == 1, "every chunk carries the message's id"
    assert all(len(f.body) <= 16 + CHUNK_SIZE for f in frames)
    assert b"".join(f.body[16:] for f in frames) == struct.pack(">I", 3) + b"cfg" + data
    assert _feed(ChunkAssembler(with_header=True), frames) == (b"cfg", data)


def test_without_a_header_the_data_is_sent_as_it_is() -> None:
    frames = _frames(b"payload", header=None)

    assert frames[0].body[16:] == b"payload"
    assert _feed(ChunkAssembler(with_header=False), frames) == (b"", b"payload")


def test_an_empty_header_is_still_a_header() -> None:
    frames = _frames(b"payload", header=b"")

    assert _feed(ChunkAssembler(with_header=True), frames) == (b"", b"payload")


def test_each_message_gets_a_fresh_id() -> None:
    assert _frames(b"x")[0].body[:16] != _frames(b"x")[0].body[:16]


@PROPERTY
@given(data=st.binary(max_size=3000), header=st.binary(max_size=100))
def test_any_message_round_trips(data: bytes, header: bytes) -> None:
    assert _feed(ChunkAssembler(with_header=True), _frames(data, header)) == (header, data)


def test_messages_from_several_senders_interleave() -> None:
    big_a, big_b = b"a" * (2 * CHUNK_SIZE), b"b" * (2 * CHUNK_SIZE)
    frames_a, frames_b = _frames(big_a, b"A", "node-a"), _frames(big_b, b"B", "node-b")
    assembler = ChunkAssembler(with_header=True)

    got = [assembler.add(f) for pair in zip(frames_a, frames_b, strict=True) for f in pair]

    assert got[:-2] == [None] * (len(got) - 2)
    assert got[-2:] == [(b"A", big_a), (b"B", big_b)]


def test_a_chunk_out_of_order_drops_the_message() -> None:
    frames = _frames(b"x" * (3 * CHUNK_SIZE))
    assembler = ChunkAssembler(with_header=True)
    assembler.add(frames[0])

    with pytest.raises(WireError, match="chunk 2 of 4 arrived out of order; the message is dropped"):
        assembler.add(frames[2])
    with pytest.raises(WireError, match="chunk 1 of 4 arrived out of order"):
        assembler.add(frames[1])  # the message is gone: its next chunk is out of order too


def test_a_chunk_count_that_changes_mid_message_is_refused() -> None:
    frames = _frames(b"x" * (2 * CHUNK_SIZE))
    assembler = ChunkAssembler(with_header=True)
    assembler.add(frames[0])

    with pytest.raises(WireError, match="out of order"):
        assembler.add(dataclasses.replace(frames[1], chunk_count=5))


@pytest.mark.parametrize(
    "frame",
    [
        Envelope.new(MessageKind.PEER, "node-a", HUB, b"\0" * 32),
        Envelope.new(MessageKind.AGGREGATION, "node-a", HUB, b"\0" * 15),
    ],
    ids=["another kind", "no message id"],
)
def test_a_frame_that_is_not_a_chunk_is_refused(frame: Envelope) -> None:
    with pytest.raises(WireError, match="not a chunk of kind AGGREGATION"):
        ChunkAssembler(with_header=True).add(frame)


def test_another_kind_can_be_chunked() -> None:
    frames = chunk_frames(b"data", sender="a", recipient="b", task_id="t", kind=MessageKind.PEER_CHUNK)

    assert frames[0].kind is MessageKind.PEER_CHUNK
    assert _feed(ChunkAssembler(with_header=False, kind=MessageKind.PEER_CHUNK), frames) == (b"", b"data")


def test_a_message_over_the_limit_is_dropped() -> None:
    frames = _frames(b"x" * (2 * CHUNK_SIZE + 1), header=None)
    assembler = ChunkAssembler(with_header=False, max_size=CHUNK_SIZE + 10)
    assembler.add(frames[0])

    with pytest.raises(WireError, match="AGGREGATION message from 'node-a' is too large"):
        assembler.add(frames[1])
    with pytest.raises(WireError, match="out of order"):
        assembler.add(frames[2])


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"\0\0", "lacks its header"), (struct.pack(">I", 9) + b"cfg", "ends inside its header")],
)
def test_a_message_without_its_header_is_refused(body: bytes, message: str) -> None:
    frames = _frames(body, header=None)

    with pytest.raises(WireError, match=message):
        _feed(ChunkAssembler(with_header=True), frames)


def test_forgetting_a_sender_drops_only_its_unfinished_messages() -> None:
    frames_a, frames_b = _frames(b"a" * (2 * CHUNK_SIZE), sender="node-a"), _frames(b"b", sender="node-b")
    assembler = ChunkAssembler(with_header=True)
    assembler.add(frames_a[0])

    assembler.forget("node-a")

    with pytest.raises(WireError, match="chunk 1 of 3 arrived out of order"):
        assembler.add(frames_a[1])
    assert assembler.add(frames_b[0]) == (b"cfg", b"b")
