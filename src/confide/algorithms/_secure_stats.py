"""Statistics computed over secure aggregation: each node sends one dense vector, the sum is finalised.

Row data never leaves a node. Each statistic is three pure functions and pydantic models:

1. ``layout(params)``: the vector's length, the largest ``|element|`` one node can produce
   given ``max_rows`` (so the fixed-point encoder can prove it never overflows Z_2^64), the
   fixed-point scale, and the L1/L2 change one row can make (for noise calibration);
2. ``contribute(data, params)``, at every node over its own rows;
3. ``finalise(params, total, min_count=...)``, on the element-wise sum over nodes, which
   secure aggregation delivers exactly (fixed point in Z_2^64).

Every node contributes the same dense vector over the whole declared domain (every group
of the cartesian product of the :class:`GroupSpec` domains, every bin, in C order), so the
sum reveals nothing about which keys a node holds. Values outside a declared domain or
bound are an error, never silently moved: a researcher must not get a statistic of data
other than the data described.

Sums of values are taken after shifting each column by the midpoint of its declared
bounds: ``|x - mid| <= halfwidth`` bounds every element (and so the fixed-point range) by
``max_rows * halfwidth^2`` rather than ``max_rows * max(|lo|, |hi|)^2``, and the variance
``(S2 - S1^2/n) / n`` then cancels only ``(mean - mid)^2 / var`` of its digits instead of
``mean^2 / var`` (brain volumes of ~1200 ml with a std of 60 would lose 2.6 of float64's
16 digits, and a lab value of ~1e6 with a std of 1e-3 all of them).

``min_count`` suppression happens in ``finalise``: it protects what is released from the
finalised statistic, not the summed vector itself, which the caller must not release.
Every count below ``min_count`` is withheld, zero included (an empty cell discloses as
much as a cell of one: "no patient of this group smokes"). This is small-cell suppression,
not differential privacy: a single withheld bin can be recovered from the total and the
others. The chi-square p-value lives in :mod:`confide.algorithms._stats_tests`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from confide._errors import AlgorithmError
from confide.algorithms._registry import DataContext
from confide.algorithms._stats_tests import ChiSquareTest, chi_square_independence

__all__ = [
    "CORRELATION",
    "CROSSTAB",
    "HISTOGRAM",
    "MOMENTS",
    "SECURE_STATISTICS",
    "ZSCORE",
    "ColumnMoments",
    "Contribution",
    "CorrelationOutput",
    "CorrelationParams",
    "CrosstabOutput",
    "CrosstabParams",
    "GroupHistogram",
    "GroupMoments",
    "GroupSpec",
    "HistogramBin",
    "HistogramOutput",
    "HistogramParams",
    "MomentsOutput",
    "MomentsParams",
    "OutOfRange",
    "QuantileEstimate",
    "ResultTable",
    "SecureStatistic",
    "VectorLayout",
    "ZScoreOutput",
    "ZScoreParams",
    "get_statistic",
]

Vector = npt.NDArray[np.float64]
Cells = npt.NDArray[np.int64]
Bounds = tuple[float, float]
M = TypeVar("M", bound=BaseModel)

MAX_LENGTH = 1_000_000
"""Longest vector a statistic may declare (groups x bins x elements)."""

# |elements| may exceed the exact bound by float rounding in the node's sums (the midpoint
# and the squares are rounded); this margin absorbs it.
_ROUNDING_MARGIN = 1.0 + 2.0**-20
_FROZEN = ConfigDict(extra="forbid", frozen=True)
_OUTPUT = ConfigDict(extra="forbid")

Decimals = Annotated[int, Field(ge=0, le=9, description="fixed-point decimals of the sums")]
MaxRows = Annotated[int, Field(ge=1, le=10**12, description="most rows one node may hold")]


# -- the interface ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VectorLayout:
    """Shape and bounds of the vector every node contributes to one statistic.

    Attributes
    ----------
    length : int
        Number of elements of every node's vector.
    bound : float
        Largest ``|element|`` of one node's vector, given ``params.max_rows``.
    scale : int
        Fixed-point scale: 1 when every element is an integer (counts), else
        ``10**params.decimals``.
    l1, l2 : float
        L1 and L2 change of the vector when one row is added or removed, in value units.
    """

    length: int
    bound: float
    scale: int
    l1: float
    l2: float


@dataclass(frozen=True)
class Contribution:
    """One node's vector and how many of its rows went into it."""

    values: Vector
    rows: int


@dataclass(frozen=True)
class ResultTable:
    """A finalised statistic as a titled table of formatted cells, for the CLI."""

    title: str
    headers: list[str]
    rows: list[list[str]]


class SecureStatistic(Protocol):
    """One statistic: a vector layout, a node's contribution, and the finalisation of the sum."""

    name: str
    description: str
    params: type[BaseModel]
    output: type[BaseModel]

    def layout(self, params: Any) -> VectorLayout:
        """The vector's length, bound, scale and sensitivity for these parameters."""
        ...

    def contribute(self, data: DataContext, params: Any) -> Contribution:
        """This node's vector; :class:`AlgorithmError` for data outside the declared domain."""
        ...

    def finalise(self, params: Any, total: Vector, *, min_count: int) -> BaseModel:
        """The statistic from the sum of every node's vector, small counts suppressed."""
        ...

    def tables(self, output: Any) -> list[ResultTable]:
        """The finalised output as tables of formatted cells."""
        ...


def _layout(length: int, bound: float, scale: int, l1: float, l2: float) -> VectorLayout:
    if length > MAX_LENGTH:
        raise AlgorithmError(
            f"the statistic needs a vector of {length} elements, more than {MAX_LENGTH}; "
            "use fewer groups, categories or bins"
        )
    if bound * scale >= 2.0**63:
        raise AlgorithmError(
            f"one node's sums may reach {bound:.3g}, which at {scale} units per 1 overflows 64-bit "
            "fixed point; lower max_rows or decimals, or narrow the bounds"
        )
    return VectorLayout(length=length, bound=bound * _ROUNDING_MARGIN, scale=scale, l1=l1, l2=l2)


def _checked_total(layout: VectorLayout, total: npt.ArrayLike) -> Vector:
    vector = np.asarray(total, dtype=np.float64)
    if vector.shape != (layout.length,):
        raise AlgorithmError(f"the summed vector has shape {vector.shape}, expected ({layout.length},)")
    if not np.isfinite(vector).all():
        raise AlgorithmError("the summed vector has non-finite elements; the aggregation is broken")
    return vector


# -- groups -------------------------------------------------------------------------------------


class GroupSpec(BaseModel):
    """A group-by column and its declared domain: categories, or bins given by their edges.

    A value ``v`` falls in bin ``i`` when ``edges[i] <= v < edges[i+1]``; the last bin is
    closed on the right. With ``other`` true, values outside the domain (and nulls) are
    counted in a last bucket labelled ``other``; otherwise they are an error.
    """

    model_config = _FROZEN

    column: str = Field(min_length=1)
    categories: list[str | int] | None = Field(default=None, min_length=1, max_length=10_000)
    bins: list[float] | None = Field(default=None, min_length=2, max_length=10_001)
    other: bool = False

    @model_validator(mode="after")
    def _one_domain(self) -> Self:
        if (self.categories is None) == (self.bins is None):
            raise ValueError(f"group {self.column!r}: give exactly one of categories or bins")
        if self.categories is not None:
            keys = [_category_key(c) for c in self.categories]
            if len(set(keys)) != len(keys):
                raise ValueError(f"group {self.column!r}: categories must be distinct")
        if self.bins is not None:
            _check_edges(self.bins, f"group {self.column!r}")
        return self

    @property
    def size(self) -> int:
        """Number of buckets, ``other`` included."""
        return len(self.labels)

    @property
    def labels(self) -> list[str]:
        """The buckets' labels, in vector order: ``"F"``, ``"[60, 70)"``, ``"other"``."""
        labels = [str(c) for c in self.categories] if self.categories is not None else _bin_labels(self.bins)
        return [*labels, "other"] if self.other else labels

    @property
    def domain(self) -> str:
        """The declared domain in words, for error messages."""
        if self.bins is not None:
            return f"bins [{_edge(self.bins[0])}, {_edge(self.bins[-1])}]"
        return f"categories {', '.join(str(c) for c in self.categories or [])}"


def _check_edges(edges: Sequence[float], where: str) -> None:
    if not all(math.isfinite(e) for e in edges):
        raise ValueError(f"{where}: bin edges must be finite")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"{where}: bin edges must be strictly increasing")


def _check_group_by(group_by: Sequence[GroupSpec]) -> None:
    columns = [g.column for g in group_by]
    if len(set(columns)) != len(columns):
        raise ValueError("group_by names a column twice")


def _edge(value: float) -> str:
    return f"{value:.15g}"


def _bin_labels(edges: Sequence[float] | None) -> list[str]:
    """``[60, 70)`` for each bin; the last one closed on the right, ``[80, 90]``."""
    edges = edges or []
    last = len(edges) - 2
    return [
        f"[{_edge(lo)}, {_edge(hi)}{']' if i == last else ')'}"
        for i, (lo, hi) in enumerate(itertools.pairwise(edges))
    ]


def _category_key(value: str | float) -> str:
    # The key Arrow's cast to string gives: 67 and 67.0 both read "67".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bin_index(x: Vector, edges: Sequence[float]) -> Cells:
    """Bin of each value (last bin closed on the right); -1 outside the edges or NaN."""
    e = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(e, x, side="right").astype(np.int64) - 1
    index[x == e[-1]] = len(e) - 2
    index[np.isnan(x) | (x < e[0]) | (x > e[-1])] = -1
    return index


def _buckets(table: pa.Table, table_name: str, spec: GroupSpec) -> Cells:
    if spec.bins is not None:
        index = _bin_index(_numeric(table, table_name, spec.column), spec.bins)
    else:
        keys = pc.cast(_column(table, table_name, spec.column), pa.string())
        value_set = pa.array([_category_key(c) for c in spec.categories or []], pa.string())
        found = pc.index_in(keys, value_set=value_set).to_numpy(zero_copy_only=False)
        index = np.where(np.isnan(found.astype(np.float64)), -1, found).astype(np.int64)
    outside = np.flatnonzero(index < 0)
    if outside.size and spec.other:
        index[outside] = spec.size - 1
    elif outside.size:
        raise AlgorithmError(_outside_message(table.column(spec.column), spec, outside))
    return index


def _outside_message(column: pa.ChunkedArray, spec: GroupSpec, outside: npt.NDArray[np.intp]) -> str:
    # Naming the first offending value is what lets a data manager fix the domain; it is
    # one group key (a category or number), shown to the task's own researcher only.
    first = column[int(outside[0])].as_py()
    what = "a null" if first is None else f"the value {first!r}"
    return (
        f"group column {spec.column!r} has {what} outside its declared {spec.domain} "
        f"({outside.size} row(s) in all); extend the domain or set other=true to count them as 'other'"
    )


def _cells(table: pa.Table, table_name: str, group_by: Sequence[GroupSpec]) -> Cells:
    """Flat index of each row's group in the cartesian product of the domains (C order)."""
    cells = np.zeros(table.num_rows, dtype=np.int64)
    for spec in group_by:
        cells = cells * spec.size + _buckets(table, table_name, spec)
    return cells


def _group_count(group_by: Sequence[GroupSpec]) -> int:
    return math.prod(spec.size for spec in group_by)


def _group_labels(group_by: Sequence[GroupSpec]) -> list[dict[str, str]]:
    columns = [spec.column for spec in group_by]
    return [
        dict(zip(columns, combo, strict=True)) for combo in itertools.product(*(s.labels for s in group_by))
    ]


# -- reading a node's data ------------------------------------------------------------------------


def _table(data: DataContext, name: str, max_rows: int) -> pa.Table:
    names = data.table_names()
    if name not in names:
        raise AlgorithmError(f"this node has no table {name!r}; it offers: {', '.join(names) or 'none'}")
    table = data.table(name)
    if table.num_rows > max_rows:
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


def _check_within(values: Vector, name: str, bounds: Bounds) -> None:
    lo, hi = bounds
    outside = int(np.count_nonzero((values < lo) | (values > hi)))
    if outside:
        raise AlgorithmError(
            f"column {name!r} has {outside} value(s) outside its declared bounds [{_edge(lo)}, {_edge(hi)}]; "
            "nothing is clipped: widen the bounds or clean the data"
        )


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


# -- finalising and formatting --------------------------------------------------------------------


def _count(value: float) -> int:
    return round(value)


@dataclass(frozen=True)
class _Moments3:
    count: int
    mean: float | None
    var_pop: float | None
    var_sample: float | None


def _moments(count: float, s1: float, s2: float, mid: float) -> _Moments3:
    """Mean and variances from the count and the shifted sum and sum of squares."""
    n = _count(count)
    if n <= 0:
        return _Moments3(n, None, None, None)
    centred = max(s2 - s1 * s1 / n, 0.0)  # rounding may leave a tiny negative for constant data
    return _Moments3(n, mid + s1 / n, centred / n, centred / (n - 1) if n > 1 else None)


def _sqrt(value: float | None) -> float | None:
    return None if value is None else math.sqrt(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _fmt_count(value: int | None) -> str:
    return "suppressed" if value is None else str(value)


def _as(model: type[M], output: Any) -> M:
    return output if isinstance(output, model) else model.model_validate(output)


def _group_title(group: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) or "all rows"


# -- stats.moments --------------------------------------------------------------------------------


class MomentsParams(BaseModel):
    """Count, sum, mean, variance and std of bounded numeric columns, per group."""

    model_config = _FROZEN

    table: str = Field(min_length=1)
    columns: list[str] = Field(min_length=1, max_length=200)
    bounds: dict[str, Bounds]
    group_by: list[GroupSpec] = Field(default_factory=list, max_length=8)
    decimals: Decimals = 3
    max_rows: MaxRows = 10_000_000

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns names a column twice")
        _check_bounds(self.columns, self.bounds)
        _check_group_by(self.group_by)
        return self


class ColumnMoments(BaseModel):
    """Moments of one column over one group's non-missing values (all None when suppressed)."""

    model_config = _OUTPUT

    count: int | None = Field(ge=0)
    sum: float | None
    mean: float | None
    var_pop: float | None
    var_sample: float | None
    std_pop: float | None
    std_sample: float | None
    suppressed: bool


class GroupMoments(BaseModel):
    """One group's rows and the moments of each column."""

    model_config = _OUTPUT

    group: dict[str, str]
    rows: int | None = Field(ge=0)
    suppressed: bool
    columns: dict[str, ColumnMoments]


class MomentsOutput(BaseModel):
    """What ``stats.moments`` finalises: one entry per group, in the domains' C order."""

    model_config = _OUTPUT

    table: str
    min_count: int
    groups: list[GroupMoments]


def _suppressed_moments() -> ColumnMoments:
    return ColumnMoments(
        count=None,
        sum=None,
        mean=None,
        var_pop=None,
        var_sample=None,
        std_pop=None,
        std_sample=None,
        suppressed=True,
    )


class _MomentsStatistic:
    """Vector: per group ``[rows, (count, sum(x-mid), sum((x-mid)^2)) per column]``."""

    name: str = "stats.moments"
    description: str = "count, sum, mean, variance and std of bounded numeric columns, per group"
    params: type[BaseModel] = MomentsParams
    output: type[BaseModel] = MomentsOutput

    def layout(self, params: MomentsParams) -> VectorLayout:
        widths = [_halfwidth(params.bounds[c]) for c in params.columns]
        per_group = 1 + 3 * len(params.columns)
        return _layout(
            length=_group_count(params.group_by) * per_group,
            bound=params.max_rows * max(1.0, *widths, *(h * h for h in widths)),
            scale=10**params.decimals,
            # one row is in one group: its row count, and per column a count, a sum, a square
            l1=1.0 + sum(1.0 + h + h * h for h in widths),
            l2=math.sqrt(1.0 + sum(1.0 + h**2 + h**4 for h in widths)),
        )

    def contribute(self, data: DataContext, params: MomentsParams) -> Contribution:
        table = _table(data, params.table, params.max_rows)
        cells = _cells(table, params.table, params.group_by)
        groups = _group_count(params.group_by)
        parts = [np.bincount(cells, minlength=groups).astype(np.float64)[:, None]]
        for name in params.columns:
            x = _numeric(table, params.table, name)
            present = ~np.isnan(x)
            _check_within(x[present], name, params.bounds[name])
            parts.append(_power_sums(cells[present], x[present], groups, params.bounds[name]))
        return Contribution(values=np.concatenate(parts, axis=1).ravel(), rows=table.num_rows)

    def finalise(self, params: MomentsParams, total: Vector, *, min_count: int) -> MomentsOutput:
        sums = _checked_total(self.layout(params), total).reshape(_group_count(params.group_by), -1)
        groups = []
        for labels, row in zip(_group_labels(params.group_by), sums, strict=True):
            rows = _count(row[0])
            if rows < min_count:
                columns = {name: _suppressed_moments() for name in params.columns}
                groups.append(GroupMoments(group=labels, rows=None, suppressed=True, columns=columns))
                continue
            columns = {
                name: _column_moments(row[1 + 3 * j : 4 + 3 * j], params.bounds[name], min_count)
                for j, name in enumerate(params.columns)
            }
            groups.append(GroupMoments(group=labels, rows=rows, suppressed=False, columns=columns))
        return MomentsOutput(table=params.table, min_count=min_count, groups=groups)

    def tables(self, output: Any) -> list[ResultTable]:
        out = _as(MomentsOutput, output)
        keys = list(out.groups[0].group) if out.groups else []
        headers = [*keys, "column", "count", "sum", "mean", "var_pop", "var_sample", "std_pop", "std_sample"]
        rows = [
            [
                *g.group.values(),
                name,
                _fmt_count(c.count),
                *map(_fmt, (c.sum, c.mean, c.var_pop, c.var_sample, c.std_pop, c.std_sample)),
            ]
            for g in out.groups
            for name, c in g.columns.items()
        ]
        return [
            ResultTable(
                title=f"moments of {out.table} (min_count {out.min_count})", headers=headers, rows=rows
            )
        ]


def _column_moments(sums: Vector, bounds: Bounds, min_count: int) -> ColumnMoments:
    m = _moments(float(sums[0]), float(sums[1]), float(sums[2]), _midpoint(bounds))
    # A column with many nulls can have fewer values than its group has rows.
    if m.count < min_count:
        return _suppressed_moments()
    return ColumnMoments(
        count=m.count,
        sum=float(sums[1]) + m.count * _midpoint(bounds),
        mean=m.mean,
        var_pop=m.var_pop,
        var_sample=m.var_sample,
        std_pop=_sqrt(m.var_pop),
        std_sample=_sqrt(m.var_sample),
        suppressed=False,
    )


# -- stats.histogram ------------------------------------------------------------------------------


class OutOfRange(StrEnum):
    """What a histogram does with a value outside its outer edges."""

    ERROR = "error"
    """Refuse to run, naming the column and how many values fall outside."""
    CLIP = "clip"
    """Count the value in the first or last bin."""


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
    out_of_range: OutOfRange = OutOfRange.ERROR
    max_rows: MaxRows = 10_000_000

    @model_validator(mode="after")
    def _consistent(self) -> Self:
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
        if params.out_of_range is OutOfRange.CLIP:
            x = np.clip(x, lo, hi)
        else:
            _check_within(x, params.column, (lo, hi))
        n_bins = len(params.bins) - 1
        flat = cells * n_bins + _bin_index(x, params.bins)
        counts = np.bincount(flat, minlength=_group_count(params.group_by) * n_bins)
        return Contribution(values=counts.astype(np.float64), rows=int(x.size))

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


# -- stats.crosstab -------------------------------------------------------------------------------


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
        counts = np.bincount(cells, minlength=params.rows.size * params.columns.size)
        return Contribution(values=counts.astype(np.float64), rows=table.num_rows)

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


# -- stats.correlation ----------------------------------------------------------------------------


class CorrelationParams(BaseModel):
    """Means, sample covariance and Pearson correlation of bounded numeric columns."""

    model_config = _FROZEN

    table: str = Field(min_length=1)
    columns: list[str] = Field(min_length=2, max_length=50)
    bounds: dict[str, Bounds]
    decimals: Decimals = 3
    max_rows: MaxRows = 10_000_000

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns names a column twice")
        _check_bounds(self.columns, self.bounds)
        return self


class CorrelationOutput(BaseModel):
    """What ``stats.correlation`` finalises, over rows where every column is present.

    A correlation is None where a column has zero variance; everything is None when the
    count is below ``min_count``.
    """

    model_config = _OUTPUT

    table: str
    columns: list[str]
    min_count: int
    count: int | None = Field(ge=0)
    suppressed: bool
    means: list[float] | None
    covariance: list[list[float]] | None
    correlation: list[list[float | None]] | None


class _CorrelationStatistic:
    """Vector: ``[count, sum(y_j) for j, sum(y_j y_k) for j <= k (row-major)]``, ``y = x - mid``."""

    name: str = "stats.correlation"
    description: str = "means, sample covariance and Pearson correlation of bounded numeric columns"
    params: type[BaseModel] = CorrelationParams
    output: type[BaseModel] = CorrelationOutput

    def layout(self, params: CorrelationParams) -> VectorLayout:
        h = np.array([_halfwidth(params.bounds[c]) for c in params.columns])
        products = np.outer(h, h)[np.triu_indices(h.size)]
        return _layout(
            length=1 + h.size + products.size,
            bound=params.max_rows * max(1.0, float(h.max()), float(products.max())),
            scale=10**params.decimals,
            l1=1.0 + float(h.sum() + products.sum()),
            l2=math.sqrt(1.0 + float((h**2).sum() + (products**2).sum())),
        )

    def contribute(self, data: DataContext, params: CorrelationParams) -> Contribution:
        table = _table(data, params.table, params.max_rows)
        x = np.column_stack([_numeric(table, params.table, c) for c in params.columns])
        x = x[~np.isnan(x).any(axis=1)]
        for j, name in enumerate(params.columns):
            _check_within(x[:, j], name, params.bounds[name])
        y = x - np.array([_midpoint(params.bounds[c]) for c in params.columns])
        products = (y.T @ y)[np.triu_indices(y.shape[1])]
        values = np.concatenate([[float(y.shape[0])], y.sum(axis=0), products])
        return Contribution(values=values, rows=int(y.shape[0]))

    def finalise(self, params: CorrelationParams, total: Vector, *, min_count: int) -> CorrelationOutput:
        vector = _checked_total(self.layout(params), total)
        n = _count(vector[0])
        suppressed = n < min_count
        means, cov, corr = (None, None, None) if suppressed or n == 0 else _co_moments(vector, n, params)
        return CorrelationOutput(
            table=params.table,
            columns=params.columns,
            min_count=min_count,
            count=None if suppressed else n,
            suppressed=suppressed,
            means=means,
            covariance=cov,
            correlation=corr,
        )

    def tables(self, output: Any) -> list[ResultTable]:
        out = _as(CorrelationOutput, output)
        title = f"{out.table}, {_fmt_count(out.count)} complete rows (min_count {out.min_count})"
        means = [[c, _fmt(None if out.means is None else out.means[j])] for j, c in enumerate(out.columns)]
        tables = [ResultTable(title=f"means of {title}", headers=["column", "mean"], rows=means)]
        matrices: list[tuple[str, Sequence[Sequence[float | None]] | None]] = [
            ("sample covariance", out.covariance),
            ("Pearson correlation", out.correlation),
        ]
        for what, matrix in matrices:
            if matrix is not None:
                rows = [[c, *map(_fmt, r)] for c, r in zip(out.columns, matrix, strict=True)]
                tables.append(ResultTable(title=f"{what} of {title}", headers=["", *out.columns], rows=rows))
        return tables


def _co_moments(
    vector: Vector, n: int, params: CorrelationParams
) -> tuple[list[float], list[list[float]] | None, list[list[float | None]] | None]:
    """Means, sample covariance and correlation from the summed vector (``n >= 1``)."""
    k = len(params.columns)
    s1 = vector[1 : 1 + k]
    upper = np.zeros((k, k))
    upper[np.triu_indices(k)] = vector[1 + k :]
    s2 = upper + np.triu(upper, 1).T
    means = np.array([_midpoint(params.bounds[c]) for c in params.columns]) + s1 / n
    if n < 2:
        return means.tolist(), None, None
    # the co-moments of the shifted values are those of the raw values
    cov = (s2 - np.outer(s1, s1) / n) / (n - 1)
    np.fill_diagonal(cov, np.maximum(np.diag(cov), 0.0))
    std = np.sqrt(np.diag(cov))
    corr = [
        [
            None if std[i] == 0 or std[j] == 0 else float(np.clip(cov[i, j] / (std[i] * std[j]), -1, 1))
            for j in range(k)
        ]
        for i in range(k)
    ]
    return means.tolist(), cov.tolist(), corr


# -- stats.zscore ---------------------------------------------------------------------------------


class ZScoreParams(BaseModel):
    """Where one patient's value lies in the distribution of their group at every node."""

    model_config = _FROZEN

    table: str = Field(min_length=1)
    column: str = Field(min_length=1)
    bounds: Bounds
    value: float = Field(allow_inf_nan=False)
    group_by: list[GroupSpec] = Field(default_factory=list, max_length=8)
    group: dict[str, str | float] = Field(default_factory=dict)
    decimals: Decimals = 3
    max_rows: MaxRows = 10_000_000

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_bounds([self.column], {self.column: self.bounds})
        _check_group_by(self.group_by)
        wanted = {g.column for g in self.group_by}
        if set(self.group) != wanted:
            raise ValueError(
                f"group must give the patient's value of exactly the group_by columns "
                f"({', '.join(sorted(wanted)) or 'none'}), not of {', '.join(sorted(self.group)) or 'none'}"
            )
        self.cell()
        return self

    def cell(self) -> int:
        """Flat index of the patient's group in the cartesian product of the domains."""
        row = pa.table({g.column: pa.array([self.group[g.column]]) for g in self.group_by})
        try:
            return int(_cells(row, "the patient's group", self.group_by)[0]) if self.group_by else 0
        except AlgorithmError as exc:
            raise ValueError(f"the patient's group: {exc}") from None


class ZScoreOutput(BaseModel):
    """What ``stats.zscore`` finalises: the patient's group's moments and the z-score."""

    model_config = _OUTPUT

    table: str
    column: str
    min_count: int
    group: dict[str, str]
    value: float
    count: int | None = Field(ge=0)
    suppressed: bool
    mean: float | None
    std_pop: float | None
    std_sample: float | None
    z: float | None


class _ZScoreStatistic:
    """Vector: ``[count, sum(x-mid), sum((x-mid)^2)]`` over the patient's group only."""

    name: str = "stats.zscore"
    description: str = "how many standard deviations a value lies from the mean of its group"
    params: type[BaseModel] = ZScoreParams
    output: type[BaseModel] = ZScoreOutput

    def layout(self, params: ZScoreParams) -> VectorLayout:
        h = _halfwidth(params.bounds)
        return _layout(
            length=3,
            bound=params.max_rows * max(1.0, h, h * h),
            scale=10**params.decimals,
            l1=1.0 + h + h * h,
            l2=math.sqrt(1.0 + h**2 + h**4),
        )

    def contribute(self, data: DataContext, params: ZScoreParams) -> Contribution:
        table = _table(data, params.table, params.max_rows)
        # every row's group is checked, so a bad domain fails the same way at every node
        in_group = _cells(table, params.table, params.group_by) == params.cell()
        x = _numeric(table, params.table, params.column)
        x = x[in_group & ~np.isnan(x)]
        _check_within(x, params.column, params.bounds)
        values = _power_sums(np.zeros(x.size, dtype=np.int64), x, 1, params.bounds)[0]
        return Contribution(values=values, rows=int(x.size))

    def finalise(self, params: ZScoreParams, total: Vector, *, min_count: int) -> ZScoreOutput:
        count, s1, s2 = _checked_total(self.layout(params), total)
        m = _moments(float(count), float(s1), float(s2), _midpoint(params.bounds))
        suppressed = m.count < min_count
        std_sample = _sqrt(m.var_sample)
        z = None if suppressed or not std_sample or m.mean is None else (params.value - m.mean) / std_sample
        return ZScoreOutput(
            table=params.table,
            column=params.column,
            min_count=min_count,
            group=_group_labels(params.group_by)[params.cell()],
            value=params.value,
            count=None if suppressed else m.count,
            suppressed=suppressed,
            mean=None if suppressed else m.mean,
            std_pop=None if suppressed else _sqrt(m.var_pop),
            std_sample=None if suppressed else std_sample,
            z=z,
        )

    def tables(self, output: Any) -> list[ResultTable]:
        out = _as(ZScoreOutput, output)
        row = [
            _group_title(out.group),
            _fmt_count(out.count),
            *map(_fmt, (out.mean, out.std_pop, out.std_sample, out.value, out.z)),
        ]
        return [
            ResultTable(
                title=f"z-score of {out.column} in {out.table} (min_count {out.min_count})",
                headers=["group", "count", "mean", "std_pop", "std_sample", "value", "z"],
                rows=[row],
            )
        ]


# -- the registry ---------------------------------------------------------------------------------

MOMENTS = _MomentsStatistic()
HISTOGRAM = _HistogramStatistic()
CROSSTAB = _CrosstabStatistic()
CORRELATION = _CorrelationStatistic()
ZSCORE = _ZScoreStatistic()

SECURE_STATISTICS: tuple[SecureStatistic, ...] = (MOMENTS, HISTOGRAM, CROSSTAB, CORRELATION, ZSCORE)


def get_statistic(name: str) -> SecureStatistic:
    """The statistic called ``name``; :class:`AlgorithmError` lists the known ones."""
    for statistic in SECURE_STATISTICS:
        if statistic.name == name:
            return statistic
    known = ", ".join(s.name for s in SECURE_STATISTICS)
    raise AlgorithmError(f"unknown statistic {name!r}; known statistics: {known}")
