"""The one secure-sum driver: what a node checks, charges and withdraws from before anything leaves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from confide._errors import AlgorithmError, PolicyError, ProtocolError
from confide.algorithms import CellRows, LocalFigures, SecureRound, TrainingCost, TrainingSpend, contribute
from confide.crypto import FixedPoint
from confide.protocols import DistributedNoise
from confide.protocols.secagg import Contribution

NODES = ["node-a", "node-b", "node-c"]


class Peers:
    """A node's PeerContext in memory: records sums, withdrawals and charges."""

    def __init__(self, *, min_count: int = 5, fail_sum: str | None = None) -> None:
        self.min_count = min_count
        self.node_id = "node-a"
        self.nodes = NODES
        self.summed: dict[str, npt.NDArray[Any]] = {}
        self.withdrawn: list[str] = []
        self.charged: list[tuple[str, float, float]] = []
        self.differenced: list[tuple[str, list[list[int]]]] = []
        self.authorised: list[tuple[dict[str, tuple[float, float]], bool]] = []
        self._fail_sum = fail_sum

    async def local(self, params: Mapping[str, object], step: str = "main") -> dict[str, object]:
        raise AssertionError("the driver gathers through its gather function")

    async def secure_sum(self, values: npt.NDArray[Any], *, label: str = "sum", **_: Any) -> Contribution:
        if label == self._fail_sum:
            raise ProtocolError(f"round {label} failed")
        self.summed[label] = values
        return Contribution(f"t/{label}", tuple(NODES), included=True)

    async def withdraw_from_sum(self, length: int, reason: str, *, label: str = "sum", **_: Any) -> None:
        self.withdrawn.append(label)

    async def charge_privacy(self, dataset: str, epsilon: float, delta: float) -> None:
        self.charged.append((dataset, epsilon, delta))

    async def authorise_release(self, charges: Mapping[str, tuple[float, float]], *, noised: bool) -> None:
        self.authorised.append((dict(charges), noised))
        for dataset, (epsilon, delta) in charges.items():
            await self.charge_privacy(dataset, epsilon, delta)

    async def check_differencing(self, table: str, cells: Sequence[npt.NDArray[Any]]) -> None:
        self.differenced.append((table, [c.tolist() for c in cells]))

    async def charge_training(
        self, dataset: str, job_id: str, round: int, cost: TrainingCost
    ) -> TrainingSpend:
        raise AssertionError("not a training round")


def _round(label: str, *, noise: bool = False, bits: int = 64, empty_ok: bool = False) -> SecureRound:
    dp = DistributedNoise.for_target(1.0, 1e-6, 2, 1.0, 1.0) if noise else None
    encoding = FixedPoint(1, 1e6, 3, bits)
    return SecureRound(label, 3, encoding, dp, "patients" if noise else None, empty_ok)


def _figures(rows: dict[str, int], values: float = 1.0) -> LocalFigures:
    return LocalFigures.of({label: np.full(3, values) for label in rows}, rows)


async def _gathered(figures: LocalFigures) -> LocalFigures:
    return figures


async def test_noise_on_two_rounds_of_one_table_is_charged_once_for_both() -> None:
    peers = Peers()
    rounds = [_round("q0", noise=True), _round("q1", noise=True)]

    await contribute(peers, rounds, lambda: _gathered(_figures({"q0": 10, "q1": 10})), timeout_s=5)  # type: ignore[arg-type]

    assert peers.charged == [("patients", pytest.approx(2.0), pytest.approx(2e-6))]
    assert set(peers.summed) == {"q0", "q1"}


async def test_a_node_below_min_count_withdraws_from_every_round_and_spends_nothing() -> None:
    peers = Peers()
    rounds = [_round("q0", noise=True), _round("q1")]

    with pytest.raises(PolicyError, match="fewer rows for this task than its min_count 5"):
        await contribute(peers, rounds, lambda: _gathered(_figures({"q0": 10, "q1": 3})), timeout_s=5)  # type: ignore[arg-type]

    assert peers.withdrawn == ["q0", "q1"] and peers.charged == [] and peers.summed == {}


async def test_a_value_outside_the_encodings_bound_withdraws_and_spends_nothing() -> None:
    peers = Peers()
    rounds = [_round("q0", noise=True)]

    with pytest.raises(Exception, match="outside the declared bound"):
        await contribute(peers, rounds, lambda: _gathered(_figures({"q0": 10}, values=1e12)), timeout_s=5)  # type: ignore[arg-type]

    assert peers.withdrawn == ["q0"] and peers.charged == []


async def test_a_step_that_says_nothing_of_a_rounds_rows_is_refused() -> None:
    peers = Peers()
    figures = LocalFigures.of({"q0": np.zeros(3)}, {})

    with pytest.raises(AlgorithmError, match="says nothing of the rows"):
        await contribute(peers, [_round("q0", empty_ok=True)], lambda: _gathered(figures), timeout_s=5)  # type: ignore[arg-type]

    assert peers.withdrawn == ["q0"]


async def test_a_failed_round_withdraws_the_node_from_the_rounds_after_it() -> None:
    peers = Peers(fail_sum="q1")
    rounds = [_round("q0"), _round("q1"), _round("q2")]

    with pytest.raises(ProtocolError, match="round q1 failed"):
        await contribute(peers, rounds, lambda: _gathered(_figures({"q0": 9, "q1": 9, "q2": 9})), timeout_s=5)  # type: ignore[arg-type]

    assert set(peers.summed) == {"q0"} and peers.withdrawn == ["q2"]


async def test_an_algorithms_own_bug_is_a_dropout_too() -> None:
    peers = Peers()

    async def broken() -> LocalFigures:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await contribute(peers, [_round("q0")], broken, timeout_s=5)  # type: ignore[arg-type]

    assert peers.withdrawn == ["q0"]


def test_noise_needs_the_64_bit_ring() -> None:
    with pytest.raises(AlgorithmError, match="needs 64-bit fixed point"):
        _round("q0", noise=True, bits=32)


async def test_the_rows_behind_each_released_cell_go_to_the_release_record_and_withheld_cells_do_not() -> (
    None
):
    peers = Peers(min_count=2)
    secure_round = SecureRound("q0", 3, FixedPoint(1, 1e6, 3, 64), cells=3)
    # rows 10, 11 in cell 0 (released); row 12 in cell 1 (one row: withheld); cell 2 empty
    rows = CellRows.of("patients", np.array([11, 10, 12], dtype=np.uint64), [0, 0, 1])
    figures = LocalFigures.of(
        {"q0": np.array([2.0, 1.0, 0.0])},
        {"q0": 3},
        counts={"q0": np.array([2.0, 1.0, 0.0])},
        members={"q0": rows},
    )

    await contribute(peers, [secure_round], lambda: _gathered(figures), timeout_s=5)  # type: ignore[arg-type]

    assert peers.differenced == [("patients", [[10, 11]])]
    assert peers.summed["q0"].tolist()[:3] == [2, 0, 0]


async def test_a_noised_round_is_not_checked_for_differencing() -> None:
    peers = Peers()
    rows = CellRows.of("patients", np.arange(10, dtype=np.uint64), [0] * 10)
    figures = LocalFigures.of({"q0": np.full(3, 1.0)}, {"q0": 10}, members={"q0": rows})

    await contribute(peers, [_round("q0", noise=True)], lambda: _gathered(figures), timeout_s=5)  # type: ignore[arg-type]

    assert peers.differenced == []


async def test_a_cell_withheld_only_in_part_is_still_recorded() -> None:
    # cell 0: a group of 3 rows (released) whose sparse column has 1 value (withheld)
    peers = Peers(min_count=2)
    secure_round = SecureRound("q0", 4, FixedPoint(1, 1e6, 3, 64), cells=2)
    rows = CellRows.of("patients", np.array([10, 11, 12], dtype=np.uint64), [0, 0, 0])
    figures = LocalFigures.of(
        {"q0": np.array([3.0, 7.5, 0.0, 0.0])},
        {"q0": 3},
        counts={"q0": np.array([3.0, 1.0, 0.0, 0.0])},
        members={"q0": rows},
    )

    await contribute(peers, [secure_round], lambda: _gathered(figures), timeout_s=5)  # type: ignore[arg-type]

    assert peers.differenced == [("patients", [[10, 11, 12]])]
    assert peers.summed["q0"].tolist() == [3, 0, 0, 0, 1, 1]
