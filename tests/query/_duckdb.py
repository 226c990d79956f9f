"""A party's dense vector computed by in-memory DuckDB over CSV or Parquet files, for tests.

What a node does with :func:`confide.query.local_sql` and :func:`confide.query.dense_vector`
(:mod:`confide.algorithms.federated_query`), without a node: each test party's table is a
file, and the vectors are added in the clear where the protocol would add them blind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
from sqlglot import exp

from confide.query import DenseLayout, QueryError, dense_vector, local_sql
from confide.query._ir import Aggregate

__all__ = ["run_local_duckdb"]

# What DuckDB may guess a CSV column to be: never BOOLEAN or a date, which its sniffer
# guesses from values such as F/T or 2024-01-01 that the schema declares as strings.
_CSV_TYPES = "['BIGINT', 'DOUBLE', 'VARCHAR']"


def run_local_duckdb(
    aggregate: Aggregate, party: str, layout: DenseLayout, files: Mapping[str, Path]
) -> npt.NDArray[np.float64]:
    """``party``'s dense vector for ``aggregate``, computed by in-memory DuckDB over CSV or Parquet files.

    ``files`` maps each table name to its file (``.parquet`` is read as Parquet, anything
    else as CSV with a header, each column an integer, a float or text as DuckDB detects).
    """

    def source(table: str) -> str:
        path = files.get(table)
        if path is None:
            raise QueryError(f"{party}: no file for table {table!r}; files are given for: {', '.join(files)}")
        literal = exp.Literal.string(str(path)).sql(dialect="duckdb")
        if path.suffix.lower() == ".parquet":
            return f"read_parquet({literal})"
        return f"read_csv({literal}, auto_type_candidates = {_CSV_TYPES})"

    sql = local_sql(aggregate, party, layout, dialect="duckdb", source=source)
    with duckdb.connect() as connection:
        try:
            rows = connection.execute(sql).fetchall()
        except duckdb.Error as error:
            raise QueryError(f"the local query at {party} failed: {error}") from None
    return dense_vector(rows, layout)
