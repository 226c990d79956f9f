"""``confide.query``'s public API (what the worked examples and the other packages import) is pinned."""

from __future__ import annotations

import confide.query

PINNED = {
    "Aggregate",
    "ColumnType",
    "DenseLayout",
    "FederationSchema",
    "Plan",
    "Query",
    "QueryError",
    "Rel",
    "aggregate",
    "aggregate_count",
    "aggregate_many",
    "col",
    "collect",
    "compile_plan",
    "concat",
    "create",
    "defCol",
    "dense_vector",
    "element_counts",
    "divide",
    "filter",
    "finalise",
    "join",
    "load_schema",
    "local_rows_sql",
    "local_sql",
    "multiply",
    "output_columns",
    "parse_sql",
    "project",
    "secure_aggregates",
    "withheld_groups",
}


def test_exported_names_are_pinned() -> None:
    assert set(confide.query.__all__) == PINNED
    assert all(hasattr(confide.query, name) for name in PINNED)
