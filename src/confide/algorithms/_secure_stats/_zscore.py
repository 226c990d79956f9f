"""``stats.zscore``: where one patient's value lies in the distribution of their group."""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field, model_validator

from confide._errors import AlgorithmError
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
from confide.algorithms._secure_stats._groups import GroupSpec, _cells, _check_group_by, _group_labels
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
    _fmt,
    _fmt_count,
    _group_title,
    _layout,
)


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
        used = in_group & ~np.isnan(x)
        x = _clipped(x[used], params.bounds)
        values = _power_sums(np.zeros(x.size, dtype=np.int64), x, 1, params.bounds)[0]
        return Contribution(values=values, rows=int(x.size), members=np.where(used, 0, -1))

    def cell_labels(self, params: Any) -> list[str]:
        return []  # one cell: the rows the round covers, checked against min_count as a whole

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


ZSCORE = _ZScoreStatistic()
