"""``stats.moments``: count, sum, mean, variance and std of bounded numeric columns, per group."""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, Field, model_validator

from confide.algorithms._context import DataContext
from confide.algorithms._result import ResultTable
from confide.algorithms._secure_stats._columns import (
    _check_bounds,
    _clipped,
    _halfwidth,
    _midpoint,
    _moments,
    _numeric,
    _power_sums,
    _sqrt,
    _table,
)
from confide.algorithms._secure_stats._groups import (
    GroupSpec,
    _cells,
    _check_group_by,
    _group_count,
    _group_labels,
)
from confide.algorithms._secure_stats._interface import (
    _FROZEN,
    _OUTPUT,
    Bounds,
    Contribution,
    Decimals,
    MaxRows,
    Vector,
    VectorLayout,
    _as,
    _checked_total,
    _count,
    _fmt,
    _fmt_count,
    _group_title,
    _layout,
)


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
        rows = np.bincount(cells, minlength=groups).astype(np.float64)[:, None]
        parts, counts = [rows], [rows]
        for name in params.columns:
            x = _numeric(table, params.table, name)
            present = ~np.isnan(x)
            inside = _clipped(x[present], params.bounds[name])
            sums = _power_sums(cells[present], inside, groups, params.bounds[name])
            parts.append(sums)
            counts.append(np.repeat(sums[:, :1], 3, axis=1))  # a column's sums come from its values
        return Contribution(
            values=np.concatenate(parts, axis=1).ravel(),
            rows=table.num_rows,
            counts=np.concatenate(counts, axis=1).ravel(),
            members=cells,
        )

    def cell_labels(self, params: MomentsParams) -> list[str]:
        return [_group_title(g) for g in _group_labels(params.group_by)]

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


MOMENTS = _MomentsStatistic()
