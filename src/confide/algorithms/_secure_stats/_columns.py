"""Reading a node's table and its bounded numeric columns.

Values are clipped to their declared bounds (a value outside them counts at the nearer
bound, and nothing about it is reported: an error naming it, or how many there are, would
tell the researcher about single patients) and shifted by the bounds' midpoint before they
are summed (see the package docstring for why); the moments
are recovered from the summed count, shifted sum and shifted sum of squares.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from confide._errors import AlgorithmError
from confide.algorithms._context import DataContext
from confide.algorithms._secure import check_max_rows
from confide.algorithms._secure_stats._interface import Bounds, Cells, Vector, _count

# -- reading a node's data ------------------------------------------------------------------------


def _table(data: DataContext, name: str, max_rows: int) -> pa.Table:
    names = data.table_names()
    if name not in names:
        raise AlgorithmError(f"this node has no table {name!r}; it offers: {', '.join(names) or 'none'}")
    table = data.table(name)
    check_max_rows(table.num_rows, max_rows, data.min_count, f"table {name!r}")
    if table.num_rows > max_rows:  # pragma: no cover - check_max_rows refused it
        # The row count itself is not disclosed: it is this node's business.
        raise AlgorithmError(
            f"table {name!r} has more than max_rows={max_rows} rows; raise max_rows "
            "(the fixed-point bound grows with it)"
        )
    return table


def _column(table: pa.Table, table_name: str, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise AlgorithmError(
            f"table {table_name!r} has no column {name!r}; it has: {', '.join(table.column_names)}"
        )
    return table.column(name)


def _numeric(table: pa.Table, table_name: str, name: str) -> Vector:
    """The column as float64, null and NaN both read as NaN (missing)."""
    column = _column(table, table_name, name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise AlgorithmError(f"column {name!r} of table {table_name!r} is {column.type}, not numeric")
    values = pc.fill_null(pc.cast(column, pa.float64()), math.nan)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def _clipped(values: Vector, bounds: Bounds) -> Vector:
    """``values`` clipped into ``bounds`` (missing values stay missing)."""
    return np.clip(values, bounds[0], bounds[1])


def _check_bounds(columns: Sequence[str], bounds: Mapping[str, Bounds]) -> None:
    for name in columns:
        if name not in bounds:
            raise ValueError(f"column {name!r} has no bounds; declare bounds[{name!r}] = [lo, hi]")
        lo, hi = bounds[name]
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise ValueError(f"bounds of {name!r} must be finite with lo < hi, not [{lo}, {hi}]")


def _midpoint(bounds: Bounds) -> float:
    return (bounds[0] + bounds[1]) / 2.0


def _halfwidth(bounds: Bounds) -> float:
    mid = _midpoint(bounds)
    return max(bounds[1] - mid, mid - bounds[0])


def _power_sums(cells: Cells, x: Vector, groups: int, bounds: Bounds) -> Vector:
    """Per group: count, sum and sum of squares of ``x - mid`` (shape ``(groups, 3)``)."""
    y = x - _midpoint(bounds)
    return np.stack(
        [
            np.bincount(cells, minlength=groups).astype(np.float64),
            np.bincount(cells, weights=y, minlength=groups),
            np.bincount(cells, weights=y * y, minlength=groups),
        ],
        axis=1,
    )


# -- moments from the shifted sums ----------------------------------------------------------------


@dataclass(frozen=True)
class _Moments3:
    count: int
    mean: float | None
    var_pop: float | None
    var_sample: float | None


def _moments(count: float, s1: float, s2: float, mid: float) -> _Moments3:
    """Mean and variances from the count and the shifted sum and sum of squares.

    The centred sum ``s2 - s1^2/n`` is off by up to ~``(3n + 5) u s2`` from float64 rounding
    (u = 2^-53) and, after fixed point at ``scale``, by up to ``k (1/2 + |mean - mid|) / scale``
    over ``k`` nodes (each rounds ``s1`` and ``s2`` by ``1/(2 scale)``); for a constant column
    that error is the whole variance, and the std shows its square root.
    """
    n = _count(count)
    if n <= 0:
        return _Moments3(n, None, None, None)
    centred = max(s2 - s1 * s1 / n, 0.0)  # rounding may leave a tiny negative for constant data
    return _Moments3(n, mid + s1 / n, centred / n, centred / (n - 1) if n > 1 else None)


def _sqrt(value: float | None) -> float | None:
    return None if value is None else math.sqrt(value)
