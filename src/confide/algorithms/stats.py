"""Built-in statistics steps.

``stats.summary``: per-node count, mean, standard deviation (sample, ddof=1), minimum and
maximum of named numeric columns of one table. Per-node results are sealed to the
researcher; combining them securely is the secure-aggregation issue's business.

The node's disclosure rules apply before anything leaves (:class:`DataContext` gives
them): a table with fewer than ``min_count`` rows is refused without saying how many; a
column with fewer than ``min_count`` usable values is withheld (``withheld: true``, no
figures); the minimum and maximum, which are single patients' values, are withheld unless
the node's policy allows extremes for the table. A node whose policy requires differential
privacy for the table refuses the whole result (exact per-node figures cannot be noised).
"""

from __future__ import annotations

import enum
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError, PolicyError
from confide.algorithms._context import DataContext
from confide.algorithms._registry import Algorithm

__all__ = ["SUMMARY", "ColumnSummary", "Extremes", "SummaryOutput", "SummaryParams"]


class SummaryParams(BaseModel):
    """Which table and columns to summarise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(min_length=1)
    columns: list[str] = Field(min_length=1, max_length=200)


class Extremes(enum.StrEnum):
    """Whether a summary carries each column's minimum and maximum (single patients' values)."""

    RELEASED = "released"
    WITHHELD = "withheld by the node's policy"


class ColumnSummary(BaseModel):
    """Statistics of one column over its non-missing values.

    ``withheld`` columns cover fewer than the node's ``min_count`` values: every figure,
    the count included, is ``None``. ``min`` and ``max`` are ``None`` where the node's
    policy withholds extremes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int | None = Field(ge=0)
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    withheld: bool = False


class SummaryOutput(BaseModel):
    """What ``stats.summary`` returns from one node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    rows: int = Field(ge=0)
    columns: dict[str, ColumnSummary]
    extremes: Extremes = Extremes.RELEASED


_WITHHELD = ColumnSummary(count=None, mean=None, std=None, min=None, max=None, withheld=True)


def _summary(data: DataContext, params: SummaryParams) -> SummaryOutput:
    table = data.table(params.table)
    if table.num_rows < data.min_count:
        # How many rows it has is the node's business: only that they are too few.
        raise PolicyError(
            f"table {params.table!r} has fewer rows than this node's min_count {data.min_count}; "
            "stats.summary releases nothing of it"
        )
    extremes = data.allows_extremes(params.table)
    out: dict[str, ColumnSummary] = {}
    for name in params.columns:
        if name not in table.column_names:
            raise AlgorithmError(
                f"table {params.table!r} has no column {name!r}; it has: {', '.join(table.column_names)}"
            )
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise AlgorithmError(f"column {name!r} is {column.type}, not numeric; it cannot be summarised")
        out[name] = _column_summary(column, data.min_count, extremes=extremes)
    return SummaryOutput(
        table=params.table,
        rows=table.num_rows,
        columns=out,
        extremes=Extremes.RELEASED if extremes else Extremes.WITHHELD,
    )


def _column_summary(column: pa.ChunkedArray, min_count: int, *, extremes: bool) -> ColumnSummary:
    values = pc.drop_null(column).to_numpy().astype(np.float64, copy=False)
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n < max(min_count, 1):
        return _WITHHELD
    std = float(values.std(ddof=1)) if n > 1 else None
    return ColumnSummary(
        count=n,
        mean=float(values.mean()),
        std=std if std is None or math.isfinite(std) else None,
        min=float(values.min()) if extremes else None,
        max=float(values.max()) if extremes else None,
    )


SUMMARY = Algorithm(
    name="stats.summary",
    description="per-node count, mean, std of numeric columns (min, max where the node allows)",
    params=SummaryParams,
    output=SummaryOutput,
    step=_summary,
)
