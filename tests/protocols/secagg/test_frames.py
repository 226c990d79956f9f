"""Secure-aggregation messages in chunk envelopes (``confide.protocols.secagg._frames``)."""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

import pytest

from confide._errors import ProtocolError
from confide.protocols.secagg import Assembler, SecAggConfig, config_fields, config_from_fields, frames_of
from confide.wire import CHUNK_SIZE, HUB, Envelope, MessageKind, RoundConfigFields, chunk_frames

CONFIG = SecAggConfig.create("t1/sum", ["node-a", "node-b", "node-c"], 5, researcher="alice")
PROTOCOLS = Path(__file__).resolve().parents[3] / "src" / "confide" / "protocols"


def test_the_configuration_fields_round_trip() -> None:
    fields = config_fields(CONFIG)

    assert fields == {
        "session": "t1/sum",
        "nodes": ["node-a", "node-b", "node-c"],
        "length": 5,
        "bits": 64,
        "threshold": 2,
        "degree": 2,
        "researcher": "alice",
        "masked": True,
    }
    assert config_from_fields(fields) == CONFIG
    assert config_from_fields(json.loads(json.dumps(fields))).digest == CONFIG.digest
    assert config_from_fields(RoundConfigFields.model_validate(fields)) == CONFIG


def test_researcher_and_masked_have_defaults() -> None:
    fields = {k: v for k, v in config_fields(CONFIG).items() if k not in ("researcher", "masked")}

    config = config_from_fields(fields)

    assert config.researcher is None and config.masked


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("t1/sum", "the round configuration must be an object"),
        ({**config_fields(CONFIG), "bits": "wide"}, "the round configuration is malformed: bits: "),
        (
            {k: v for k, v in config_fields(CONFIG).items() if k != "nodes"},
            "malformed: nodes: Field required",
        ),
        ({**config_fields(CONFIG), "colour": "red"}, "malformed: colour: Extra inputs"),
        ({**config_fields(CONFIG), "bits": 16}, "not Z_2\\^16"),  # parsed, then refused by SecAggConfig
    ],
)
def test_a_malformed_configuration_is_a_protocol_error(fields: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        config_from_fields(fields)


def test_a_message_travels_with_its_configuration_in_front() -> None:
    frames = frames_of(b"message", sender="node-a", recipient=HUB, task_id="t1", config=CONFIG)
    header = json.dumps(config_fields(CONFIG), separators=(",", ":")).encode()

    assert [f.kind for f in frames] == [MessageKind.AGGREGATION]
    assert frames[0].body[16:] == struct.pack(">I", len(header)) + header + b"message"
    assert Assembler(with_config=True).add(frames[0]) == (CONFIG, b"message")


def test_a_large_message_is_chunked_and_reassembled() -> None:
    message = bytes(range(256)) * (3 * CHUNK_SIZE // 256)
    frames = frames_of(message, sender="node-a", recipient=HUB, task_id="t1", config=CONFIG)
    assembler = Assembler(with_config=True)

    results = [assembler.add(Envelope.decode(f.encode())) for f in frames]

    assert len(frames) == 4 and results[:-1] == [None] * 3
    assert results[-1] == (CONFIG, message)


def test_without_a_configuration_the_message_is_all_there_is() -> None:
    frames = frames_of(b"message", sender=HUB, recipient="node-a", task_id="t1", config=None)

    assert frames[0].body[16:] == b"message"
    assert Assembler(with_config=False).add(frames[0]) == (None, b"message")


def test_chunking_errors_are_protocol_errors() -> None:
    frames = frames_of(b"x" * (2 * CHUNK_SIZE), sender="node-a", recipient=HUB, task_id="t1", config=CONFIG)
    assembler = Assembler(with_config=True)

    with pytest.raises(ProtocolError, match="chunk 1 of 3 arrived out of order"):
        assembler.add(frames[1])
    with pytest.raises(ProtocolError, match="not a chunk of kind AGGREGATION"):
        assembler.add(Envelope.new(MessageKind.PEER, "node-a", HUB, b"\0" * 32))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"{not json", "the configuration is not JSON"),
        (b"\xff\xfe", "the configuration is not JSON"),
        (b"[1, 2]", "the round configuration must be an object"),
        (b'{"session": "t1/sum"}', "the round configuration is malformed: nodes: Field required"),
    ],
)
def test_a_bad_configuration_in_front_is_a_protocol_error(header: bytes, message: str) -> None:
    frames = chunk_frames(b"message", header=header, sender="node-a", recipient=HUB, task_id="t1")

    with pytest.raises(ProtocolError, match=message):
        Assembler(with_config=True).add(frames[0])


def test_a_disconnected_sender_is_forgotten() -> None:
    frames = frames_of(b"x" * (2 * CHUNK_SIZE), sender="node-a", recipient=HUB, task_id="t1", config=CONFIG)
    assembler = Assembler(with_config=True)
    assembler.add(frames[0])

    assembler.forget("node-a")

    with pytest.raises(ProtocolError, match="out of order"):
        assembler.add(frames[1])


def _envelope_uses(tree: ast.AST) -> list[int]:
    """Lines that import ``Envelope`` at run time or call it (``Envelope(...)``, ``Envelope.new``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []  # an import for annotations only is fine
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == "Envelope" for a in node.names):
            found.append(node.lineno)
        if isinstance(node, ast.Call):
            target = node.func.value if isinstance(node.func, ast.Attribute) else node.func
            if isinstance(target, ast.Name) and target.id == "Envelope":
                found.append(node.lineno)
    return found


@pytest.mark.parametrize("path", sorted(PROTOCOLS.rglob("*.py")), ids=lambda p: str(p.relative_to(PROTOCOLS)))
def test_protocols_build_no_envelopes(path: Path) -> None:
    # chunking and envelopes are the wire's: a protocol hands bytes to confide.wire
    tree = ast.parse(path.read_text())

    assert _envelope_uses(tree) == []
