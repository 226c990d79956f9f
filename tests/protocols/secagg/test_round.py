"""Whole rounds in memory: exact sums, dropouts at every stage, aborts that reveal nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confide._errors import ProtocolError
from confide.protocols.secagg import (
    SecAggConfig,
    ServerStage,
    remove_pads,
    run_in_memory,
)
from tests.protocols.secagg.conftest import RESEARCHER, make_clients, parties

DROP_STAGES = [ServerStage.ADVERTISE, ServerStage.SHARE_KEYS, ServerStage.MASKED_INPUT, ServerStage.UNMASK]


def _inputs(nodes: tuple[str, ...], length: int, bits: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)  # test data only; the protocol's randomness is secrets/AES-CTR
    dtype = np.dtype(f"u{bits // 8}")
    return {n: rng.integers(0, np.iinfo(dtype).max, size=length, dtype=dtype, endpoint=True) for n in nodes}


def _plain_sum(inputs: dict[str, np.ndarray], nodes: tuple[str, ...] | list[str], bits: int) -> np.ndarray:
    total = np.zeros_like(next(iter(inputs.values())))
    for n in nodes:
        total += inputs[n]
    return total


def _unpadded(config: SecAggConfig, server_outcome) -> np.ndarray:  # type: ignore[no-untyped-def]
    return remove_pads(
        config,
        server_outcome.total,
        server_outcome.survivors,
        server_outcome.pads,
        me=RESEARCHER,
        parties=parties(config.nodes),
    )


def test_full_round_gives_the_exact_sum_to_the_researcher_only() -> None:
    nodes = ("h1", "h2", "h3", "h4", "h5")
    config = SecAggConfig.create("task-1/0", nodes, 1000, researcher="alice")
    inputs = _inputs(nodes, 1000, 64, seed=1)

    server = run_in_memory(make_clients(config, inputs))

    assert server.outcome is not None and server.error is None
    assert server.outcome.survivors == nodes
    expected = _plain_sum(inputs, nodes, 64)
    assert not np.array_equal(server.outcome.total, expected)  # the hub holds a padded sum
    np.testing.assert_array_equal(_unpadded(config, server.outcome), expected)


def test_without_a_researcher_the_server_gets_the_plain_sum_32_bit() -> None:
    nodes = ("a", "b", "c")
    config = SecAggConfig.create("s", nodes, 64, bits=32)
    inputs = _inputs(nodes, 64, 32, seed=2)

    server = run_in_memory(make_clients(config, inputs))

    assert server.outcome is not None
    assert server.outcome.total.dtype == np.uint32
    np.testing.assert_array_equal(server.outcome.total, _plain_sum(inputs, nodes, 32))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=3, max_value=9),
    length=st.integers(min_value=1, max_value=40),
    bits=st.sampled_from([32, 64]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    data=st.data(),
)
def test_any_survivor_set_at_or_above_the_threshold_yields_the_exact_sum(
    n: int, length: int, bits: int, seed: int, data: st.DataObject
) -> None:
    nodes = tuple(f"n{i}" for i in range(n))
    threshold = data.draw(st.integers(min_value=n // 2 + 1, max_value=n))
    config = SecAggConfig.create(
        f"prop/{seed}", nodes, length, bits=bits, threshold=threshold, researcher="alice"
    )
    events = {
        node: data.draw(
            st.one_of(st.none(), st.tuples(st.sampled_from(["drop", "leave"]), st.sampled_from(DROP_STAGES)))
        )
        for node in nodes
    }
    drops = {node: e[1] for node, e in events.items() if e and e[0] == "drop"}
    leaves = {node: e[1] for node, e in events.items() if e and e[0] == "leave"}
    inputs = _inputs(nodes, length, bits, seed)

    server = run_in_memory(make_clients(config, inputs), drops=drops, leaves=leaves)

    # last[node]: the last stage (0..3) whose message it sent; present[k]: still there after stage k
    def last(node: str) -> int:
        if node in drops:
            return DROP_STAGES.index(drops[node]) - 1
        return DROP_STAGES.index(leaves[node]) if node in leaves else 3

    answered = [[m for m in nodes if last(m) >= k] for k in range(4)]
    t = config.threshold
    # Whether a node that leaves at a stage's close still counts for that close depends on
    # message order, so decide only the clear cases: enough even if it does not count ...
    gone_early = [[m for m in nodes if last(m) > k or not events[m]] for k in range(2)]
    surely = min(len(gone_early[0]), len(gone_early[1]), len(answered[2]), len(answered[3])) >= t
    # ... and too few even if it does.
    never = min(len(answered[0]), len(answered[1]), len(answered[2]), len(answered[3])) < t
    if server.outcome is not None:
        assert not never
        assert server.outcome.survivors == tuple(answered[2])
        expected = _plain_sum(inputs, answered[2], bits)
        np.testing.assert_array_equal(_unpadded(config, server.outcome), expected)
    else:
        assert not surely, server.error
        assert server.error is not None
        assert "threshold" in server.error or "needed" in server.error


def test_three_of_ten_dropping_after_their_masked_input_are_still_summed() -> None:
    nodes = tuple(f"h{i:02d}" for i in range(10))
    config = SecAggConfig.create("drop/1", nodes, 500, researcher="alice")
    inputs = _inputs(nodes, 500, 64, seed=5)
    drops = {"h01": ServerStage.UNMASK, "h04": ServerStage.UNMASK, "h07": ServerStage.UNMASK}

    server = run_in_memory(make_clients(config, inputs), drops=drops)

    assert server.outcome is not None
    assert server.outcome.survivors == nodes  # their masked inputs arrived: they count
    np.testing.assert_array_equal(_unpadded(config, server.outcome), _plain_sum(inputs, nodes, 64))


def test_nodes_leaving_right_after_answering_are_handled_at_every_stage() -> None:
    nodes = tuple(f"h{i}" for i in range(7))
    config = SecAggConfig.create("leave/1", nodes, 300, researcher="alice")
    inputs = _inputs(nodes, 300, 64, seed=11)
    leaves = {"h0": ServerStage.ADVERTISE, "h2": ServerStage.SHARE_KEYS, "h4": ServerStage.MASKED_INPUT}

    server = run_in_memory(make_clients(config, inputs), leaves=leaves)

    assert server.outcome is not None, server.error
    # h4's masked input arrived: it counts; h0 and h2 left before theirs
    survivors = tuple(n for n in nodes if n not in ("h0", "h2"))
    assert server.outcome.survivors == survivors
    assert server.outcome.dropped == ("h2",)  # h2 dealt shares, so its pairwise masks were removed
    np.testing.assert_array_equal(_unpadded(config, server.outcome), _plain_sum(inputs, survivors, 64))


def test_three_of_ten_dropping_before_their_masked_input_are_left_out() -> None:
    nodes = tuple(f"h{i:02d}" for i in range(10))
    config = SecAggConfig.create("drop/2", nodes, 500, researcher="alice")
    inputs = _inputs(nodes, 500, 64, seed=6)
    drops = dict.fromkeys(("h02", "h05", "h09"), ServerStage.MASKED_INPUT)

    server = run_in_memory(make_clients(config, inputs), drops=drops)

    assert server.outcome is not None
    survivors = tuple(n for n in nodes if n not in drops)
    assert server.outcome.dropped == tuple(sorted(drops))
    np.testing.assert_array_equal(_unpadded(config, server.outcome), _plain_sum(inputs, survivors, 64))


def test_too_few_masked_inputs_abort_before_any_share_is_revealed() -> None:
    nodes = ("a", "b", "c", "d", "e")
    config = SecAggConfig.create("few", nodes, 16, researcher="alice")
    assert config.threshold == 3
    drops = {n: ServerStage.MASKED_INPUT for n in ("a", "b", "c")}
    clients = make_clients(config, _inputs(nodes, 16, 64, seed=7))

    server = run_in_memory(clients, drops=drops)

    assert server.outcome is None
    assert server.error is not None and "only 2 of 5 nodes sent a masked input" in server.error
    assert server.stage is ServerStage.FAILED
    assert not server._total.any()  # nothing kept
    # no survivor was ever asked to unmask: none left the SURVIVORS stage
    assert all(clients[n].stage.value == "done" for n in ("d", "e"))
    assert all(clients[n].contribution is None for n in nodes)


def test_sparse_graph_for_a_large_round_with_dropouts() -> None:
    nodes = tuple(f"n{i:03d}" for i in range(40))
    config = SecAggConfig.create("sparse", nodes, 8, researcher="alice")
    assert config.degree < len(nodes) - 1
    assert all(len(config.neighbours(n)) == config.degree for n in nodes)
    inputs = _inputs(nodes, 8, 64, seed=8)
    drops = {"n003": ServerStage.UNMASK, "n017": ServerStage.MASKED_INPUT}

    server = run_in_memory(make_clients(config, inputs), drops=drops)

    assert server.outcome is not None, server.error
    survivors = [n for n in nodes if n != "n017"]
    np.testing.assert_array_equal(_unpadded(config, server.outcome), _plain_sum(inputs, survivors, 64))


def test_a_wrong_input_width_is_refused_up_front() -> None:
    config = SecAggConfig.create("w", ("a", "b"), 4)
    with pytest.raises(ProtocolError, match="dtype uint64"):
        make_clients(config, {"a": np.zeros(4, np.uint32), "b": np.zeros(4, np.uint64)})


def test_the_unmasked_baseline_is_one_stage_in_the_clear() -> None:
    nodes = ("a", "b", "c")
    config = SecAggConfig.create("plain", nodes, 32, masked=False)
    inputs = _inputs(nodes, 32, 64, seed=12)
    with pytest.raises(ProtocolError, match="no output pads"):
        SecAggConfig.create("plain", nodes, 32, masked=False, researcher="alice")

    server = run_in_memory(make_clients(config, inputs))

    assert server.outcome is not None
    np.testing.assert_array_equal(server.outcome.total, _plain_sum(inputs, nodes, 64))
