"""Built-in statistics steps.

``stats.summary``: per-node count, mean, standard deviation (sample, ddof=1), minimum and
maximum of named numeric columns of one table. Per-node results are sealed to the
researcher; combining them securely is the secure-aggregation issue's business.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError
from confide.algorithms._context import DataContext
from confide.algorithms._registry import Algorithm

__all__ = ["SUMMARY", "ColumnSummary", "SummaryOutput", "SummaryParams"]


class SummaryParams(BaseModel):
    """Which table and columns to summarise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(min_length=1)
    columns: list[str] = Field(min_length=1, max_length=200)


class ColumnSummary(BaseModel):
    """Statistics of one column over its non-missing values."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=0)
    mean: float | None
    std: float | None
    min: float | None
    max: float | None


class SummaryOutput(BaseModel):
    """What ``stats.summary`` returns from one node."""

    model_config = ConfigDict(extra="forbid")

    table: str
    rows: int = Field(ge=0)
    columns: dict[str, ColumnSummary]


def _summary(data: DataContext, params: SummaryParams) -> SummaryOutput:
    table = data.table(params.table)
    out: dict[str, ColumnSummary] = {}
    for name in params.columns:
        if name not in table.column_names:
            raise AlgorithmError(
                f"table {params.table!r} has no column {name!r}; it has: {', '.join(table.column_names)}"
            )
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise AlgorithmError(f"column {name!r} is {column.type}, not numeric; it cannot be summarised")
        out[name] = _column_summary(column)
    return SummaryOutput(table=params.table, rows=table.num_rows, columns=out)


def _column_summary(column: pa.ChunkedArray) -> ColumnSummary:
    values = pc.drop_null(column).to_numpy().astype(np.float64, copy=False)
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n == 0:
        return ColumnSummary(count=0, mean=None, std=None, min=None, max=None)
    std = float(values.std(ddof=1)) if n > 1 else None
    return ColumnSummary(
        count=n,
        mean=float(values.mean()),
        std=std if std is None or math.isfinite(std) else None,
        min=float(values.min()),
        max=float(values.max()),
    )


SUMMARY = Algorithm(
    name="stats.summary",
    description="per-node count, mean, std, min, max of numeric columns",
    params=SummaryParams,
    output=SummaryOutput,
    step=_summary,
)
