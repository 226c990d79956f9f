"""A secure-aggregation round's outcome as the hub answers it (``confide.wire._aggregate``)."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confide._errors import WireError
from confide.wire import AggregateMeta, RoundConfigFields, decode_aggregate, encode_aggregate

PROPERTY = settings(deadline=None, database=None, max_examples=50)
NODES = ["node-a", "node-b", "node-c"]
PAD = bytes(range(200))  # longer than 76 base64 characters: no line breaks may creep in


def _config(**changes: Any) -> dict[str, Any]:
    fields = {
        "session": "t1/sum",
        "nodes": NODES,
        "length": 3,
        "bits": 64,
        "threshold": 2,
        "degree": 2,
        "researcher": "alice",
        "masked": True,
    }
    return {**fields, **changes}


def _legacy_meta(**changes: Any) -> dict[str, Any]:
    """The meta exactly as the hub wrote it before the model existed (a dict, ``json.dumps``)."""
    meta = {
        "ok": True,
        "error": "",
        "bits": 64,
        "length": 3,
        "config": _config(),
        "survivors": ["node-a", "node-b"],
        "dropped": ["node-c"],
        "pads": {"node-a": base64.b64encode(PAD).decode(), "node-b": base64.b64encode(PAD[::-1]).decode()},
    }
    return {**meta, **changes}


def _answer(meta: dict[str, Any] | bytes, total: bytes) -> bytes:
    encoded = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return struct.pack(">I", len(encoded)) + encoded + total


TOTAL = struct.pack("<3Q", 1, 2**64 - 1, 42)


def test_the_answer_is_byte_for_byte_what_the_hub_always_sent() -> None:
    meta = AggregateMeta(
        ok=True,
        bits=64,
        length=3,
        config=_config(),
        survivors=("node-a", "node-b"),
        dropped=("node-c",),
        pads={"node-a": PAD, "node-b": PAD[::-1]},
    )

    assert meta.to_json() == json.dumps(_legacy_meta())
    assert encode_aggregate(meta, TOTAL) == _answer(_legacy_meta(), TOTAL)


def test_decoding_gives_the_typed_meta_and_the_total() -> None:
    meta, total = decode_aggregate(_answer(_legacy_meta(), TOTAL))

    assert meta.ok and meta.survivors == ("node-a", "node-b") and meta.dropped == ("node-c",)
    assert meta.pads == {"node-a": PAD, "node-b": PAD[::-1]}
    assert meta.config == RoundConfigFields.model_validate(_config())
    assert meta.config.nodes == tuple(NODES) and meta.config.researcher == "alice"
    assert total == TOTAL


def test_a_failed_round_has_a_reason_and_no_total() -> None:
    failed = _legacy_meta(ok=False, error="only 1 of 3 nodes left", survivors=[], dropped=[], pads={})

    meta, total = decode_aggregate(_answer(failed, b""))

    assert not meta.ok and meta.error == "only 1 of 3 nodes left" and total == b""
    assert encode_aggregate(meta, b"") == _answer(failed, b"")


@PROPERTY
@given(
    ok=st.booleans(),
    bits=st.sampled_from([32, 64]),
    length=st.integers(1, 40),
    survivors=st.lists(st.sampled_from(NODES), unique=True),
    pads=st.dictionaries(st.sampled_from(NODES), st.binary(max_size=300)),
    error=st.text(max_size=30),
    data=st.data(),
)
def test_any_outcome_round_trips(
    ok: bool,
    bits: int,
    length: int,
    survivors: list[str],
    pads: dict[str, bytes],
    error: str,
    data: st.DataObject,
) -> None:
    meta = AggregateMeta(
        ok=ok,
        error=error,
        bits=bits,
        length=length,
        config=_config(bits=bits, length=length),
        survivors=survivors,
        pads=pads,
    )
    total = data.draw(st.binary(min_size=meta.total_size, max_size=meta.total_size))

    assert decode_aggregate(encode_aggregate(meta, total)) == (meta, total)


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        (_legacy_meta(ok="perhaps"), "ok"),
        ({k: v for k, v in _legacy_meta().items() if k != "config"}, "config"),
        (_legacy_meta(config=_config(bits="wide")), "config.bits"),
        (_legacy_meta(config={**_config(), "extra": 1}), "config.extra"),
        (_legacy_meta(config="t1/sum"), "config"),
        (_legacy_meta(survivors="node-a"), "survivors"),
        (_legacy_meta(pads={"node-a": "not base64!"}), "pads.node-a"),
        (_legacy_meta(pads={"node-a": 7}), "pads.node-a"),
        (_legacy_meta(bits=16, config=_config(bits=16)), "bits"),
        (_legacy_meta(length=0, config=_config(length=0)), "length"),
        (_legacy_meta(unexpected=True), "unexpected"),
    ],
)
def test_a_malformed_meta_is_a_wire_error_naming_the_field(meta: dict[str, Any], field: str) -> None:
    with pytest.raises(WireError, match=rf"aggregate meta is malformed: {field}: "):
        decode_aggregate(_answer(meta, TOTAL))


def test_the_meta_must_agree_with_its_config() -> None:
    with pytest.raises(WireError, match="bits 32 and length 3 differ from the config's 64 and 3"):
        decode_aggregate(_answer(_legacy_meta(bits=32), TOTAL[:12]))


def test_meta_that_is_not_json_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="aggregate meta is malformed"):
        decode_aggregate(_answer(b"{not json", TOTAL))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "ends inside its meta length"),
        (b"\0\0", "ends inside its meta length"),
        (struct.pack(">I", 500) + b"{}", r"ends inside its meta \(500 bytes announced\)"),
    ],
)
def test_a_truncated_answer_is_a_wire_error(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode_aggregate(data)


@pytest.mark.parametrize("total", [TOTAL[:-1], TOTAL + b"\0", b""])
def test_a_total_of_the_wrong_size_is_a_wire_error(total: bytes) -> None:
    with pytest.raises(WireError, match=rf"padded total is {len(total)} bytes; 3 values of 64 bits are 24"):
        decode_aggregate(_answer(_legacy_meta(), total))


def test_a_failed_round_with_a_total_is_a_wire_error() -> None:
    failed = _legacy_meta(ok=False, error="timed out")

    with pytest.raises(WireError, match="a failed round has no padded total, but 24 bytes follow"):
        decode_aggregate(_answer(failed, TOTAL))


def test_encoding_refuses_a_total_that_disagrees_with_the_meta() -> None:
    meta, _ = decode_aggregate(_answer(_legacy_meta(), TOTAL))

    with pytest.raises(WireError, match="the padded total is 8 bytes, not the 24 its meta says"):
        encode_aggregate(meta, TOTAL[:8])
