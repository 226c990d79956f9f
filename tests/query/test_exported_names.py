"""``confide.query``'s public API (what the worked examples import) is pinned."""

from __future__ import annotations

import confide.query

PINNED = {
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
    "divide",
    "filter",
    "join",
    "load_schema",
    "multiply",
    "parse_sql",
    "project",
}


def test_exported_names_are_pinned() -> None:
    assert set(confide.query.__all__) == PINNED
    assert all(hasattr(confide.query, name) for name in PINNED)
