"""``stats.histogram``: counts in declared bins and quantiles interpolated from them, per group.

Small bins are suppressed as well as small groups; each quantile is located to its bin and
interpolated within it, so it is within that bin's width of the sample quantile.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, model_validator

from confide.algorithms._context import DataContext
from confide.algorithms._result import ResultTable
from confide.algorithms._secure_stats._columns import _clipped, _numeric, _table
from confide.algorithms._secure_stats._groups import (
    GroupSpec,
    _bin_index,
    _bin_labels,
    _cells,
    _check_edges,
    _check_group_by,
    _group_count,
    _group_labels,
)
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
    _group_title,
    _layout,
)


class OutOfRange(StrEnum):
    """What a histogram does with a value outside its outer edges."""

    ERROR = "error"
    """No longer run: refusing would tell the researcher whether a patient's value lies outside."""
    CLIP = "clip"
    """Count the value in the first or last bin (the only mode a node runs)."""


class HistogramParams(BaseModel):
    """A histogram with declared bin edges, and quantiles estimated from it, per group."""

    model_config = _FROZEN

    table: str = Field(min_length=1)
    column: str = Field(min_length=1)
    bins: list[float] = Field(min_length=2, max_length=10_001)
    quantiles: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75], max_length=99
    )
    group_by: list[GroupSpec] = Field(default_factory=list, max_length=8)
    out_of_range: OutOfRange = OutOfRange.CLIP
    max_rows: MaxRows = 10_000_000

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.out_of_range is OutOfRange.ERROR:
            raise ValueError(
                "out_of_range 'error' is no longer offered: refusing a histogram would tell whether some "
                "patient's value lies outside the edges; values outside are counted in the outer bins (clip)"
            )
        _check_edges(self.bins, "bins")
        _check_group_by(self.group_by)
        return self


class HistogramBin(BaseModel):
    """One bin and its count (None when below ``min_count``)."""

    model_config = _OUTPUT

    label: str
    lower: float
    upper: float
    count: int | None = Field(ge=0)


class QuantileEstimate(BaseModel):
    """A quantile interpolated within its bin.

    The estimate lies in the same bin as the sample quantile ``x_(ceil(q n))`` (the
    inverted-CDF definition), so it is within ``max_error``, that bin's width, of it.
    """

    model_config = _OUTPUT

    q: float
    value: float | None
    max_error: float | None


class GroupHistogram(BaseModel):
    """One group's histogram; everything None when its total is below ``min_count``."""

    model_config = _OUTPUT

    group: dict[str, str]
    total: int | None = Field(ge=0)
    suppressed: bool
    bins: list[HistogramBin]
    quantiles: list[QuantileEstimate]


class HistogramOutput(BaseModel):
    """What ``stats.histogram`` finalises: one histogram per group, in the domains' C order."""

    model_config = _OUTPUT

    table: str
    column: str
    min_count: int
    groups: list[GroupHistogram]


class _HistogramStatistic:
    """Vector: per group, the count of each bin (non-missing values only)."""

    name: str = "stats.histogram"
    description: str = "counts in declared bins and interpolated quantiles of a numeric column, per group"
    params: type[BaseModel] = HistogramParams
    output: type[BaseModel] = HistogramOutput

    def layout(self, params: HistogramParams) -> VectorLayout:
        # one row adds 1 to one bin of one group
        length = _group_count(params.group_by) * (len(params.bins) - 1)
        return _layout(length=length, bound=float(params.max_rows), scale=1, l1=1.0, l2=1.0)

    def contribute(self, data: DataContext, params: HistogramParams) -> Contribution:
        table = _table(data, params.table, params.max_rows)
        cells = _cells(table, params.table, params.group_by)
        x = _numeric(table, params.table, params.column)
        present = ~np.isnan(x)
        x, cells = x[present], cells[present]
        lo, hi = params.bins[0], params.bins[-1]
        x = _clipped(x, (lo, hi))  # out_of_range is clip: see HistogramParams
        n_bins = len(params.bins) - 1
        flat = cells * n_bins + _bin_index(x, params.bins)
        members = np.full(present.size, -1, dtype=np.int64)
        members[present] = flat
        counts = np.bincount(flat, minlength=_group_count(params.group_by) * n_bins).astype(np.float64)
        # every bin is a cell, its count its own rows
        return Contribution(values=counts, rows=int(x.size), counts=counts, members=members)

    def cell_labels(self, params: HistogramParams) -> list[str]:
        bins = _bin_labels(params.bins)
        return [
            f"{_group_title(g)}: {params.column} {b}" if g else f"{params.column} {b}"
            for g in _group_labels(params.group_by)
            for b in bins
        ]

    def finalise(self, params: HistogramParams, total: Vector, *, min_count: int) -> HistogramOutput:
        counts = _checked_total(self.layout(params), total).reshape(_group_count(params.group_by), -1)
        groups = [
            _group_histogram(labels, np.rint(row).astype(np.int64), params, min_count)
            for labels, row in zip(_group_labels(params.group_by), counts, strict=True)
        ]
        return HistogramOutput(table=params.table, column=params.column, min_count=min_count, groups=groups)

    def tables(self, output: Any) -> list[ResultTable]:
        out = _as(HistogramOutput, output)
        tables = []
        for g in out.groups:
            where = f"{out.column} ({_group_title(g.group)}; total {_fmt_count(g.total)})"
            tables.append(
                ResultTable(
                    title=f"histogram of {where}",
                    headers=["bin", "count"],
                    rows=[[b.label, _fmt_count(b.count)] for b in g.bins],
                )
            )
            tables.append(
                ResultTable(
                    title=f"quantiles of {where}",
                    headers=["q", "estimate", "max error"],
                    rows=[[f"{q.q:g}", _fmt(q.value), _fmt(q.max_error)] for q in g.quantiles],
                )
            )
        return tables


def _group_histogram(
    labels: dict[str, str], counts: npt.NDArray[np.int64], params: HistogramParams, min_count: int
) -> GroupHistogram:
    edges = params.bins
    names = _bin_labels(edges)
    total = int(counts.sum())
    suppressed = total < min_count
    # Small bins are withheld as well as small groups: a bin of 2 patients in [90, 100] is
    # as identifying as a group of 2. Quantiles still use every count: each is only located
    # to its bin, within max_error.
    bins = [
        HistogramBin(
            label=name, lower=lo, upper=hi, count=None if suppressed or int(c) < min_count else int(c)
        )
        for name, (lo, hi), c in zip(names, itertools.pairwise(edges), counts, strict=True)
    ]
    quantiles = [
        QuantileEstimate(q=q, value=None, max_error=None)
        if suppressed or total == 0
        else _quantile(counts, edges, q)
        for q in params.quantiles
    ]
    return GroupHistogram(
        group=labels,
        total=None if suppressed else total,
        suppressed=suppressed,
        bins=bins,
        quantiles=quantiles,
    )


def _quantile(counts: npt.NDArray[np.int64], edges: Sequence[float], q: float) -> QuantileEstimate:
    """Interpolate linearly within the bin holding order statistic ceil(q n) (the minimum for q=0)."""
    cumulative = np.cumsum(counts)
    rank = q * float(cumulative[-1])
    # the first bin whose cumulative count reaches the rank; for rank 0, the first non-empty bin
    i = int(np.searchsorted(cumulative, rank if rank > 0 else 1.0, side="left"))
    before = float(cumulative[i - 1]) if i > 0 else 0.0
    width = edges[i + 1] - edges[i]
    return QuantileEstimate(q=q, value=edges[i] + (rank - before) / float(counts[i]) * width, max_error=width)


HISTOGRAM = _HistogramStatistic()
