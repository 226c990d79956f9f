"""Group-by columns: their declared domains (categories or bins), and each row's group.

Every node contributes over the whole cartesian product of the declared domains, in C
order, so the sum reveals nothing about which keys a node holds. A value outside its
domain is an error, or counted in an ``other`` bucket when the group asks for one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, model_validator

from confide._errors import AlgorithmError
from confide.algorithms._secure_stats._columns import _column, _numeric
from confide.algorithms._secure_stats._interface import _FROZEN, Cells, Vector, _edge


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
        raise AlgorithmError(_outside_message(spec))
    return index


def _outside_message(spec: GroupSpec) -> str:
    # Neither the value nor how many rows hold one: either would tell the researcher about
    # single patients (a rare code, a count). The data manager finds them with their own tools.
    return (
        f"group column {spec.column!r} has values (or nulls) outside its declared {spec.domain}; "
        "extend the domain or set other=true to count them as 'other'"
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
