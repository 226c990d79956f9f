"""The federation's declared schema: which parties hold which tables, and each column's type and domain.

The compiler resolves names and types against it, takes GROUP BY domains from it (so
every party contributes the same dense vector and no party learns which keys another
holds), and takes numeric bounds from it (secure sums are fixed point: a column summed
without declared bounds is refused).

A schema is written in YAML or JSON::

    tables:
      employees:
        parties: [acme, globex, initech]
        columns:
          gender: {type: str, categories: [F, M]}
          job: {type: str, categories: [engineer, manager, sales], other: true}
          salary: {type: float, bounds: [0, 1000000]}
          age: {type: int, bins: [18, 30, 40, 50, 67]}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from confide._errors import QueryError
from confide.kit import load_model
from confide.query._ir import ColumnType

__all__ = ["ColumnSchema", "FederationSchema", "TableSchema", "load_schema"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class ColumnSchema(BaseModel):
    """One column: its type and, where the query needs them, its domain or bounds."""

    model_config = _FROZEN

    type: ColumnType
    bounds: tuple[float, float] | None = Field(default=None, description="[lo, hi] of a numeric column")
    categories: tuple[str | int, ...] | None = Field(default=None, min_length=1, max_length=10_000)
    bins: tuple[float, ...] | None = Field(default=None, min_length=2, max_length=10_001)
    other: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.categories is not None and self.bins is not None:
            raise ValueError("give categories or bins, not both")
        if self.bounds is not None:
            lo, hi = self.bounds
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"bounds must be finite with lo < hi, not {list(self.bounds)}")
            if not self.type.numeric:
                raise ValueError(f"bounds apply to numeric columns, not to {self.type.value}")
        if self.bins is not None and any(b >= a for a, b in zip(self.bins[1:], self.bins, strict=False)):
            raise ValueError("bins must be strictly increasing")
        return self

    @property
    def has_domain(self) -> bool:
        """Whether the column can be a GROUP BY key (declared categories or bins)."""
        return self.categories is not None or self.bins is not None


class TableSchema(BaseModel):
    """A table every listed party holds, with the same columns."""

    model_config = _FROZEN

    parties: tuple[str, ...] = Field(min_length=1)
    columns: dict[str, ColumnSchema] = Field(min_length=1)


class FederationSchema(BaseModel):
    """Every table of the federation."""

    model_config = _FROZEN

    tables: dict[str, TableSchema] = Field(min_length=1)

    def table(self, name: str) -> TableSchema:
        """The table ``name``; :class:`QueryError` lists the known ones."""
        found = self.tables.get(name)
        if found is None:
            known = ", ".join(sorted(self.tables))
            raise QueryError(f"unknown table {name!r}; the federation declares: {known}")
        return found


def load_schema(path: Path) -> FederationSchema:
    """Read a schema file; :class:`ConfigError` names the file and field on error."""
    return load_model(path, FederationSchema, "federation schema")
