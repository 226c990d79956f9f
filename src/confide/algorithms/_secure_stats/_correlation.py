"""``stats.correlation``: means, sample covariance and Pearson correlation of bounded columns."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    _numeric,
    _table,
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
    _layout,
)


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
        complete = ~np.isnan(x).any(axis=1)
        x = x[complete]
        for j, name in enumerate(params.columns):
            x[:, j] = _clipped(x[:, j], params.bounds[name])
        y = x - np.array([_midpoint(params.bounds[c]) for c in params.columns])
        products = (y.T @ y)[np.triu_indices(y.shape[1])]
        values = np.concatenate([[float(y.shape[0])], y.sum(axis=0), products])
        return Contribution(values=values, rows=int(y.shape[0]), members=np.where(complete, 0, -1))

    def cell_labels(self, params: Any) -> list[str]:
        return []  # one cell: the rows the round covers, checked against min_count as a whole

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


CORRELATION = _CorrelationStatistic()
