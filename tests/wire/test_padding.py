"""Length hiding: sealed plaintexts padded to size buckets, so an envelope says little by its size."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from confide._errors import ConfideError, WireError
from confide.crypto import MemoryReplayGuard, PartyIdentity, Role
from confide.wire import Envelope, Flags, MessageKind, open_envelope, padded_size, seal_envelope
from confide.wire._padding import pad, unpad

NODE = PartyIdentity.generate("node-a", "org-a", Role.NODE)
ALICE = PartyIdentity.generate("alice", "uni", Role.RESEARCHER)


@given(st.binary(max_size=5000))
def test_padding_round_trips_and_lands_on_a_bucket(data: bytes) -> None:
    padded = pad(data)

    assert unpad(padded) == data
    assert len(padded) == padded_size(len(padded)) >= len(data) + 1


@given(st.integers(min_value=0, max_value=1 << 30))
def test_a_bucket_costs_under_an_eighth_and_never_shrinks(size: int) -> None:
    bucket = padded_size(size)

    assert size <= bucket <= max(256, size * 1.125 + 1)
    assert padded_size(bucket) == bucket


@pytest.mark.parametrize("broken", [b"", b"\x00" * 256, b"abc" + b"\x00" * 253, b"x\x80" + bytes(300)])
def test_what_is_not_padded_to_its_bucket_is_refused(broken: bytes) -> None:
    with pytest.raises(WireError, match="not padded to its bucket"):
        unpad(broken)


def _sealed(plaintext: bytes) -> Envelope:
    envelope = Envelope.new(MessageKind.TASK_RESULT, "node-a", "alice", task_id="t1")
    return seal_envelope(envelope, plaintext, NODE, ALICE.public)


def test_results_that_differ_only_in_a_values_length_are_sealed_to_the_same_size() -> None:
    short = _sealed(b'{"node":"node-a","ok":true,"output":{"mean":7.1}}')
    longer = _sealed(b'{"node":"node-a","ok":true,"output":{"mean":7.123456789012345}}')

    assert len(short.body) == len(longer.body)
    assert short.flags & Flags.PADDED
    assert open_envelope(longer, me=ALICE, sender=NODE.public, guard=MemoryReplayGuard()).endswith(b"345}}")


def test_the_padded_flag_is_sealed_with_the_header_so_the_path_cannot_strip_it() -> None:
    envelope = _sealed(b"payload")
    stripped = replace(envelope, flags=envelope.flags & ~Flags.PADDED)

    with pytest.raises(ConfideError):
        open_envelope(stripped, me=ALICE, sender=NODE.public, guard=MemoryReplayGuard())
