"""``stats.crosstab``: a contingency table of two grouped columns, with a chi-square test.

The test itself (:func:`~confide.algorithms._stats_tests.chi_square_independence`) lives in
:mod:`confide.algorithms._stats_tests`; here it is withheld when any cell is suppressed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from confide.algorithms._context import DataContext
from confide.algorithms._result import ResultTable
from confide.algorithms._secure_stats._columns import _table
from confide.algorithms._secure_stats._groups import GroupSpec, _cells
from confide.algorithms._secure_stats._interface import (
    _FROZEN,
    _OUTPUT,
    Contribution,
    MaxRows,
    Vector,
    VectorLayout,
    _as,
    _checked_total,
    _fmt,
    _fmt_count,
    _layout,
)
from confide.algorithms._stats_tests import ChiSquareTest, chi_square_independence


class CrosstabParams(BaseModel):
    """A contingency table of two grouped columns and Pearson's chi-square test."""

    model_config = _FROZEN

    table: str = Field(min_length=1)
    rows: GroupSpec
    columns: GroupSpec
    max_rows: MaxRows = 10_000_000


class CrosstabOutput(BaseModel):
    """What ``stats.crosstab`` finalises. Counts below ``min_count`` are None."""

    model_config = _OUTPUT

    table: str
    row_column: str
    column_column: str
    min_count: int
    row_labels: list[str]
    column_labels: list[str]
    counts: list[list[int | None]]
    row_totals: list[int | None]
    column_totals: list[int | None]
    total: int | None
    chi_square: float | None
    dof: int | None
    p_value: float | None
    note: str | None


class _CrosstabStatistic:
    """Vector: the ``rows x columns`` counts in row-major order."""

    name: str = "stats.crosstab"
    description: str = "contingency table of two grouped columns with a chi-square test of independence"
    params: type[BaseModel] = CrosstabParams
    output: type[BaseModel] = CrosstabOutput

    def layout(self, params: CrosstabParams) -> VectorLayout:
        # one row adds 1 to one cell
        length = params.rows.size * params.columns.size
        return _layout(length=length, bound=float(params.max_rows), scale=1, l1=1.0, l2=1.0)

    def contribute(self, data: DataContext, params: CrosstabParams) -> Contribution:
        table = _table(data, params.table, params.max_rows)
        cells = _cells(table, params.table, [params.rows, params.columns])
        counts = np.bincount(cells, minlength=params.rows.size * params.columns.size).astype(np.float64)
        # every cell of the table is a cell, its count its own rows
        return Contribution(values=counts, rows=table.num_rows, counts=counts, members=cells)

    def cell_labels(self, params: CrosstabParams) -> list[str]:
        return [
            f"{params.rows.column}={r}, {params.columns.column}={c}"
            for r in params.rows.labels
            for c in params.columns.labels
        ]

    def finalise(self, params: CrosstabParams, total: Vector, *, min_count: int) -> CrosstabOutput:
        counts = np.rint(_checked_total(self.layout(params), total)).reshape(params.rows.size, -1)
        chi2, note = _chi_square(counts, min_count)
        return CrosstabOutput(
            table=params.table,
            row_column=params.rows.column,
            column_column=params.columns.column,
            min_count=min_count,
            row_labels=params.rows.labels,
            column_labels=params.columns.labels,
            counts=[_shown(row, min_count) for row in counts],
            row_totals=_shown(counts.sum(axis=1), min_count),
            column_totals=_shown(counts.sum(axis=0), min_count),
            total=_shown(counts.sum(keepdims=True).ravel(), min_count)[0],
            chi_square=None if chi2 is None else chi2.statistic,
            dof=None if chi2 is None else chi2.dof,
            p_value=None if chi2 is None else chi2.p_value,
            note=note,
        )

    def tables(self, output: Any) -> list[ResultTable]:
        out = _as(CrosstabOutput, output)
        rows = [
            [label, *map(_fmt_count, cells), _fmt_count(t)]
            for label, cells, t in zip(out.row_labels, out.counts, out.row_totals, strict=True)
        ]
        rows.append(["total", *map(_fmt_count, out.column_totals), _fmt_count(out.total)])
        test = [
            [
                _fmt(out.chi_square),
                "-" if out.dof is None else str(out.dof),
                _fmt(out.p_value),
                out.note or "",
            ]
        ]
        return [
            ResultTable(
                title=f"{out.row_column} x {out.column_column} in {out.table} (min_count {out.min_count})",
                headers=[f"{out.row_column} \\ {out.column_column}", *out.column_labels, "total"],
                rows=rows,
            ),
            ResultTable(
                title="chi-square test of independence", headers=["chi2", "dof", "p", "note"], rows=test
            ),
        ]


def _shown(counts: Vector, min_count: int) -> list[int | None]:
    return [None if c < min_count else int(c) for c in counts]


def _chi_square(counts: Vector, min_count: int) -> tuple[ChiSquareTest | None, str | None]:
    """The test of independence, or None and why not; a note when its approximation is poor."""
    if (counts < min_count).any():
        return None, (
            f"cells below min_count={min_count} are suppressed; the chi-square is not reported "
            "because it would let them be recovered"
        )
    test = chi_square_independence(counts)
    if test is None:
        return None, "the chi-square test needs at least two non-empty rows and two non-empty columns"
    if test.min_expected < 5:
        return (
            test,
            f"the smallest expected count is {test.min_expected:.3g} (< 5): the p-value is approximate",
        )
    return test, None


CROSSTAB = _CrosstabStatistic()
