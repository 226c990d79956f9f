"""Helpers for the worked examples' tests: load an example's module, start a consortium on its data.

The examples are scripts, not a package: each module is loaded from its file under a name
of its own, so the three ``generate.py`` do not collide.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import yaml

from tests.conftest import InProcessConsortium

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(example: str, module: str) -> ModuleType:
    """``examples/<example>/<module>.py``, imported."""
    spec = importlib.util.spec_from_file_location(
        f"examples_{example}_{module}", EXAMPLES / example / f"{module}.py"
    )
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def text(example: str, name: str) -> str:
    """An example's file, as text (``query.sql``, ...)."""
    return (EXAMPLES / example / name).read_text()


def schema(example: str) -> dict[str, Any]:
    """An example's federation schema, as the researcher sends it."""
    loaded: dict[str, Any] = yaml.safe_load(text(example, "schema.yaml"))
    return loaded


def released(
    root: Path, table: str, group: str, value: str, where: str, min_count: int = 5
) -> dict[Any, tuple[int, float]]:
    """Per group, the count and sum of ``value`` over the nodes where the group has ``min_count`` rows.

    What a secure sum releases: each node withholds a group (a cell) from fewer of its own
    rows than its ``min_count``, so the total counts only the nodes that hold enough.
    """
    totals: dict[Any, tuple[int, float]] = {}
    for file in sorted(root.glob(f"node-*/{table}.*")):
        sql = f"SELECT {group}, count(*), sum({value}) FROM '{file}' WHERE {where} GROUP BY {group}"
        for key, count, total in duckdb.sql(sql).fetchall():
            if count >= min_count:
                n, s = totals.get(key, (0, 0.0))
                totals[key] = (n + count, s + total)
    return totals


def start(root: Path, example: str, hospitals: int, **rows: int) -> InProcessConsortium:
    """A consortium whose nodes hold the example's generated data (``rows`` go to its ``write``)."""
    write = functools.partial(load(example, "generate").write, **rows)
    return InProcessConsortium(root, hospitals=hospitals, tables=write).start()


def pooled(root: Path, table: str) -> duckdb.DuckDBPyRelation:
    """Every node's generated file of ``table`` under ``root``, in one DuckDB relation (in the clear)."""
    files = sorted(root.glob(f"node-*/{table}.*"))
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM '{f}'" for f in files)
    return duckdb.sql(union)
