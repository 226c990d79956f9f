"""What each party sees: the hub's view is independent of the inputs; lying servers are caught."""

from __future__ import annotations

import math

import numpy as np
import pytest

from confide._errors import ProtocolError
from confide.protocols.secagg import (
    Advertise,
    Keys,
    MaskedInput,
    SecAggConfig,
    SecAggServer,
    Survivors,
    decode_message,
    encode_message,
)
from tests.protocols.secagg.conftest import make_clients

NODES = ("h1", "h2", "h3")
LENGTH = 20_000


def _hub_view(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a round by hand and return every vector the server holds: inputs as masked, and the total."""
    config = SecAggConfig.create("view", NODES, LENGTH, researcher="alice")
    clients = make_clients(config, inputs)
    server = SecAggServer(config)
    seen: list[np.ndarray] = []
    outbox = []
    for n in NODES:
        outbox += server.receive(n, clients[n].start())
    while outbox:
        node, message = outbox.pop(0)
        reply = clients[node].handle(message)
        if reply is None:
            continue
        if isinstance(reply, MaskedInput):
            seen.append(reply.vector.copy())
        outbox += server.receive(node, reply)
    assert server.outcome is not None
    seen.append(server.outcome.total)
    return seen


def _top_byte_chi2_p(vector: np.ndarray) -> float:
    counts = np.bincount((vector >> np.uint64(56)).astype(np.int64), minlength=256)
    expected = vector.size / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # Wilson-Hilferty normal approximation of the chi-square(255) upper tail
    k = 255
    z = ((chi2 / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def test_the_hubs_view_is_uniform_whatever_the_inputs() -> None:
    zeros = {n: np.zeros(LENGTH, np.uint64) for n in NODES}
    top = np.iinfo(np.uint64).max // 3
    extreme = {n: np.full(LENGTH, top * (i + 1), np.uint64) for i, n in enumerate(NODES)}

    for inputs in (zeros, extreme):
        view = _hub_view(inputs)
        true_sum = sum((inputs[n] for n in NODES), np.zeros(LENGTH, np.uint64))
        for vector in view:
            # every vector the hub holds, the padded sum included, looks uniform ...
            assert _top_byte_chi2_p(vector) > 1e-6
            # ... and is unrelated to any input or to the sum
            assert np.mean(vector == true_sum) < 0.001
            assert all(np.mean(vector == inputs[n]) < 0.001 for n in NODES)


def test_a_forged_key_advertisement_is_refused() -> None:
    config = SecAggConfig.create("forged", NODES, 4)
    clients = make_clients(config, {n: np.zeros(4, np.uint64) for n in NODES})
    adverts = {n: clients[n].start() for n in NODES}
    forged = Advertise("h2", b"\x09" * 32, adverts["h2"].digest, adverts["h2"].signature)

    with pytest.raises(ProtocolError, match="not signed by its certified key"):
        clients["h1"].handle(Keys((forged, adverts["h3"])))


def test_an_advertisement_for_another_configuration_is_refused() -> None:
    config = SecAggConfig.create("cfg", NODES, 4)
    other = SecAggConfig.create("cfg", NODES, 5)
    clients = make_clients(config, {n: np.zeros(4, np.uint64) for n in NODES})
    liar = make_clients(other, {n: np.zeros(5, np.uint64) for n in NODES})["h2"]
    clients["h1"].start()

    with pytest.raises(ProtocolError, match="configuration"):
        clients["h1"].handle(Keys((liar.start(), clients["h3"].start())))


def test_a_node_refuses_to_reveal_both_shares_of_one_node() -> None:
    config = SecAggConfig.create("both", NODES, 4)
    clients = make_clients(config, {n: np.zeros(4, np.uint64) for n in NODES})
    server = SecAggServer(config)
    outbox = []
    for n in NODES:
        outbox += server.receive(n, clients[n].start())
    while outbox and not isinstance(outbox[0][1], Survivors):
        node, message = outbox.pop(0)
        reply = clients[node].handle(message)
        if reply is not None:
            outbox += server.receive(node, reply)

    with pytest.raises(ProtocolError, match="both survivors and dropped"):
        clients["h1"].handle(Survivors(NODES, ("h2",)))


def test_the_server_refuses_out_of_turn_and_impersonated_messages() -> None:
    config = SecAggConfig.create("turn", NODES, 4)
    clients = make_clients(config, {n: np.zeros(4, np.uint64) for n in NODES})
    server = SecAggServer(config)
    advert = clients["h1"].start()

    with pytest.raises(ProtocolError, match="expects Advertise from 'h2'"):
        server.receive("h2", advert)  # h1's message, arriving on h2's connection
    server.receive("h1", advert)
    with pytest.raises(ProtocolError, match="already answered"):
        server.receive("h1", advert)
    with pytest.raises(ProtocolError, match=r"not \(or no longer\) in round"):
        server.receive("mallory", advert)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"\x01", "at least 5 bytes"),
        (b"\x63\x00\x00\x00\x02{}", "unknown secure-aggregation message kind 99"),
        (b"\x01\x00\x00\x01\x00{}", "header length 256 exceeds"),
        (b"\x01\x00\x00\x00\x02[]", "header is not an object"),
        (b'\x01\x00\x00\x00\x0b{"node": 1}', "field 'node' must be a string"),
        (b"\x0f\x00\x00\x00\x02{}", "field 'reason' must be a string"),
    ],
)
def test_malformed_frames_name_what_is_wrong(frame: bytes, match: str) -> None:
    config = SecAggConfig.create("bad", NODES, 4)
    with pytest.raises(ProtocolError, match=match):
        decode_message(frame, config)


def test_a_masked_input_of_the_wrong_size_is_refused() -> None:
    config = SecAggConfig.create("size", NODES, 4)
    frame = encode_message(MaskedInput("h1", np.zeros(5, np.uint64), b""))

    with pytest.raises(ProtocolError, match="sums 4 values of 64 bits"):
        decode_message(frame, config)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nodes": ("a",)}, "at least 2 nodes"),
        ({"nodes": ("a", "b"), "length": 0}, "length must be at least 1"),
        ({"nodes": ("a", "b", "c"), "bits": 16}, "Z_2\\^16"),
        ({"nodes": ("a", "b", "c", "d"), "threshold": 2}, "strict majority"),
        ({"nodes": tuple("abcdefghij"), "degree": 5}, "even number"),
    ],
)
def test_impossible_configurations_are_refused(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"length": 4, **kwargs}
    with pytest.raises(ProtocolError, match=match):
        SecAggConfig.create("cfg", **args)  # type: ignore[arg-type]
