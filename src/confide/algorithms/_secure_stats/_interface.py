"""The interface every secure statistic implements, and what the statistics share.

A statistic declares a :class:`VectorLayout` (length, fixed-point bound and scale,
sensitivity), each node computes a :class:`Contribution`, and the finalised output is shown
as titled tables of cells (:class:`ResultTable`). Also here: the checks on a layout and on
the summed vector, the pydantic configurations and field types the statistics' models
share, and the formatting of result cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError
from confide.algorithms._context import DataContext
from confide.algorithms._result import ResultTable

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
    """One node's vector, how many of its rows went into it, and into each element.

    ``counts`` (for a statistic with cells) has the vector's shape: the node withholds an
    element that comes from fewer than its ``min_count`` rows, and flags its cell.
    ``members`` says which of the table's rows each cell comes from.
    """

    values: Vector
    rows: int
    counts: Vector | None = None
    members: Cells | None = None
    """Per row of the table: the cell it went into, -1 if none (the node's differencing check)."""


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

    def cell_labels(self, params: Any) -> list[str]:
        """The vector's cells (equal blocks, in order), each withheld where small; [] for one cell."""
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


# -- formatting ---------------------------------------------------------------------------------


def _count(value: float) -> int:
    return round(value)


def _edge(value: float) -> str:
    return f"{value:.15g}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _fmt_count(value: int | None) -> str:
    return "suppressed" if value is None else str(value)


def _as(model: type[M], output: Any) -> M:
    return output if isinstance(output, model) else model.model_validate(output)


def _group_title(group: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) or "all rows"
