"""Chunked stream sealing: order, integrity, truncation and splicing are all detected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confide._errors import TamperedError, WireError
from confide.crypto import CHUNK_SIZE, StreamKey, StreamOpener, StreamSealer


def _seal_all(key: StreamKey, chunks: list[bytes]) -> list[tuple[int, bytes, bool]]:
    sealer = StreamSealer(key)
    out = []
    for i, chunk in enumerate(chunks):
        final = i == len(chunks) - 1
        index, ciphertext = sealer.seal_chunk(chunk, final=final)
        out.append((index, ciphertext, final))
    return out


@settings(max_examples=30, deadline=None)
@given(chunks=st.lists(st.binary(max_size=2048), min_size=1, max_size=8))
def test_stream_round_trips(chunks: list[bytes]) -> None:
    key = StreamKey.generate()
    opener = StreamOpener(key)

    opened = [opener.open_chunk(i, c, final=f) for i, c, f in _seal_all(key, chunks)]

    assert opened == chunks and opener.complete


def test_a_full_mebibyte_chunk_passes_and_a_larger_one_is_refused() -> None:
    key = StreamKey.generate()
    sealer = StreamSealer(key)

    _, ciphertext = sealer.seal_chunk(b"\x01" * CHUNK_SIZE, final=False)
    with pytest.raises(WireError, match="at most"):
        sealer.seal_chunk(b"\x01" * (CHUNK_SIZE + 1), final=True)
    assert StreamOpener(key).open_chunk(0, ciphertext, final=False) == b"\x01" * CHUNK_SIZE


def test_altered_reordered_spliced_and_reflagged_chunks_are_refused() -> None:
    key, other = StreamKey.generate(), StreamKey.generate()
    sealed = _seal_all(key, [b"a" * 10, b"b" * 10, b"c" * 10])
    foreign = _seal_all(other, [b"x" * 10, b"y" * 10])

    altered = bytearray(sealed[0][1])
    altered[3] ^= 1
    with pytest.raises(TamperedError, match="does not authenticate"):
        StreamOpener(key).open_chunk(0, bytes(altered), final=False)
    with pytest.raises(TamperedError, match="chunk 1 arrived where chunk 0"):
        StreamOpener(key).open_chunk(1, sealed[1][1], final=False)
    with pytest.raises(TamperedError, match="does not authenticate"):
        StreamOpener(key).open_chunk(0, foreign[0][1], final=False)  # spliced from another stream
    with pytest.raises(TamperedError, match="does not authenticate"):
        StreamOpener(key).open_chunk(0, sealed[0][1], final=True)  # truncation passed off as the end


def test_truncated_stream_is_never_complete_and_nothing_follows_the_final_chunk() -> None:
    key = StreamKey.generate()
    sealed = _seal_all(key, [b"a", b"b", b"c"])
    opener = StreamOpener(key)

    for index, ciphertext, final in sealed[:2]:
        opener.open_chunk(index, ciphertext, final=final)
    assert not opener.complete
    opener.open_chunk(*sealed[2][:2], final=True)
    with pytest.raises(TamperedError, match="after the stream's final chunk"):
        opener.open_chunk(3, sealed[2][1], final=True)


def test_sealer_refuses_chunks_after_the_final_one_and_keys_parse_back() -> None:
    key = StreamKey.generate()
    sealer = StreamSealer(key)
    sealer.seal_chunk(b"end", final=True)

    with pytest.raises(WireError, match="already closed"):
        sealer.seal_chunk(b"more", final=False)
    assert StreamKey.from_bytes(key.to_bytes()) == key
    with pytest.raises(WireError, match="48 bytes"):
        StreamKey.from_bytes(b"short")
