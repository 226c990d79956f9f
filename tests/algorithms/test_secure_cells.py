"""Per-cell min_count in the secure-sum driver: a node withholds every small cell before it leaves."""

from __future__ import annotations

import numpy as np
import pytest

from confide._errors import AlgorithmError
from confide.algorithms import LocalFigures, SecureRound, split_withheld, withhold_small_cells
from confide.crypto import FixedPoint
from confide.protocols import DistributedNoise
from confide.query import DenseLayout, element_counts

ENCODING = FixedPoint(1, 1e6, 3, 64)


def _round(cells: int, *, noise: bool = False) -> SecureRound:
    dp = DistributedNoise.for_target(1.0, 1e-6, 2, 1.0, 1.0) if noise else None
    return SecureRound("stat", 6, ENCODING, dp, "patients" if noise else None, cells=cells)


def _figures(values: list[float], counts: list[float] | None) -> LocalFigures:
    counted = None if counts is None else {"stat": np.asarray(counts, dtype=np.float64)}
    return LocalFigures.of({"stat": np.asarray(values, dtype=np.float64)}, {"stat": 100}, counts=counted)


def test_an_element_from_fewer_rows_than_min_count_is_sent_as_zero_and_its_cell_flagged() -> None:
    # three cells of two elements: (count 9, sum 70.5), (count 2, sum 131.0), (count 0, sum 0)
    figures = _figures([9, 70.5, 2, 131.0, 0, 0], [9, 9, 2, 2, 0, 0])

    released = withhold_small_cells(figures, _round(3), min_count=5)

    assert released.tolist() == [9, 70.5, 0, 0, 0, 0, 0, 1, 1]


def test_an_empty_cell_is_flagged_like_a_small_one_so_the_flags_do_not_reveal_which_groups_exist() -> None:
    empty = withhold_small_cells(_figures([0] * 6, [0] * 6), _round(3), min_count=5)
    one_patient = withhold_small_cells(_figures([0, 0, 0, 0, 1, 64.0], [0, 0, 0, 0, 1, 1]), _round(3), 5)

    assert empty.tolist() == one_patient.tolist()


def test_a_round_with_noise_withholds_nothing_and_appends_no_flags() -> None:
    # Dropping a cell before the noise would let one row move the whole cell: DP governs it.
    figures = _figures([9, 70.5, 2, 131.0, 0, 0], [9, 9, 2, 2, 0, 0])
    noisy = _round(3, noise=True)

    released = withhold_small_cells(figures, noisy, min_count=5)

    assert released.tolist() == [9, 70.5, 2, 131.0, 0, 0]
    assert noisy.summed_length == 6


def test_a_step_that_gives_no_counts_for_a_round_with_cells_is_refused() -> None:
    with pytest.raises(AlgorithmError, match="no row counts"):
        withhold_small_cells(_figures([1] * 6, None), _round(3), min_count=5)


def test_counts_of_another_shape_are_refused() -> None:
    with pytest.raises(AlgorithmError, match="do not match"):
        withhold_small_cells(_figures([1] * 6, [9] * 4), _round(3), min_count=5)


def test_cells_must_divide_the_vector() -> None:
    with pytest.raises(AlgorithmError, match="do not divide"):
        SecureRound("stat", 6, ENCODING, cells=4)


def test_the_researcher_splits_the_flags_off_and_reads_any_raised_flag_as_withheld() -> None:
    secure_round = _round(3)
    total = np.array([30, 210.5, 12, 80.0, 0, 0, 0, 2, 3], dtype=np.float64)

    values, flags = split_withheld(secure_round, total)

    assert values.tolist() == [30, 210.5, 12, 80.0, 0, 0]
    assert flags is not None and flags.tolist() == [False, True, True]


def test_a_query_sum_counts_the_rows_behind_its_own_values() -> None:
    from confide.query import FederationSchema, compile_plan, parse_sql, secure_aggregates

    schema = FederationSchema.model_validate(
        {
            "tables": {
                "t": {
                    "parties": ["a", "b"],
                    "columns": {
                        "g": {"type": "str", "categories": ["x", "y"]},
                        "v": {"type": "float", "bounds": [0, 10]},
                    },
                }
            }
        }
    )
    plan = compile_plan(
        parse_sql("SELECT g, COUNT(*) AS n, AVG(v) AS m, SUM(v) AS s FROM t GROUP BY g", schema), schema
    )
    (aggregate,) = secure_aggregates(plan)
    layout = DenseLayout.for_aggregate(aggregate, schema, max_rows=100)
    specs = [(s.func.value, s.column) for s in layout.specs]
    # group x: 20 rows, 3 with v; group y: 2 rows, both with v
    per_spec = {("count", None): (20, 2), ("count", "v"): (3, 2), ("sum", "v"): (15.0, 9.0)}
    vector = np.array([[per_spec[s][g] for s in specs] for g in range(2)], dtype=np.float64).ravel()

    counts = element_counts(vector, layout).reshape(2, -1)

    expected = {("count", None): (20, 2), ("count", "v"): (3, 2), ("sum", "v"): (3, 2)}
    assert counts.tolist() == [[expected[s][g] for s in specs] for g in range(2)]
