"""``query.sql``: a federated SQL query, compiled at every node, combined by secure sums.

Every node compiles the same query against the same federation schema (both in the
sealed task parameters), so all nodes agree on the plan without trusting the hub. The
algorithm declares:

- step (worker, every node): for each secure-sum aggregate of the plan, this node's local
  part as SQL where the data is, turned into a dense vector over the declared domains; the
  researcher's SQL text itself never runs. Each table is read through the node's SELECT
  of its declared columns (``DataContext.source``): if every table of the part is in one
  database the generator writes SQL for (PostgreSQL, SQLite), the part runs there
  (``DataContext.run_sql``); otherwise in DuckDB, over views that scan the CSV and Parquet
  files directly (so DuckDB pushes projections and filters into the scan) and over the
  other tables read into Arrow;
- rounds ``q0``, ``q1``, ...: one secure sum per aggregate, fixed-point encoded; a node
  whose part covers fewer than its ``min_count`` rows (but some) sits out;
- finalise (researcher): decode each total and evaluate the operators placed at the
  receiver; groups below the largest ``min_count`` are withheld (:class:`QueryResult`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, overload

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from confide._errors import QueryError
from confide.algorithms._context import DataContext, TableSource
from confide.algorithms._registry import Algorithm
from confide.algorithms._result import ResultTable, withheld_note
from confide.algorithms._secure import CellRows, LocalFigures, SecureRound, SecureTotals, check_max_rows
from confide.crypto import FixedPoint, min_bits
from confide.query import (
    Aggregate,
    DenseLayout,
    FederationSchema,
    Plan,
    compile_plan,
    dense_vector,
    element_counts,
    finalise,
    local_rows_sql,
    local_sql,
    output_columns,
    parse_sql,
    secure_aggregates,
    withheld_groups,
)

__all__ = ["QUERY_SQL", "QueryParams", "QueryResult", "SourceRef", "compiled", "encoding_of"]

log = logging.getLogger("confide.algorithms.query")
_PLACEHOLDER = secrets.token_hex(8)


class SourceRef(BaseModel):
    """Which of the node's declared sources stands for a schema table: by name or by file name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = Field(default=None, min_length=1, max_length=255)
    file: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _one(self) -> SourceRef:
        if (self.table is None) == (self.file is None):
            raise ValueError("give exactly one of table or file")
        return self


class QueryParams(BaseModel):
    """The query, the federation's schema, and the fixed-point resolution.

    ``sources`` (from a job spec) maps, per node, schema tables to the node's own
    declared sources; without an entry a schema table is the declared source of that name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str = Field(min_length=1, max_length=100_000)
    schema_: dict[str, Any] = Field(alias="schema")
    decimals: int = Field(default=3, ge=0, le=9)
    max_rows: int = Field(default=10_000_000, ge=1, le=10**12)
    sources: dict[str, dict[str, SourceRef]] = Field(default_factory=dict)
    timeout_s: float = Field(default=300.0, gt=0, le=3600)


Row = dict[str, object]


@dataclass(frozen=True)
class QueryResult(Sequence[Row]):
    """A federated query's result rows, and who they came from (:class:`~confide.algorithms.Finalised`).

    It is a sequence of rows (dicts, columns in the query's order), so ``result[0]["n"]``
    and ``for row in result`` work; the rest says how it was computed.
    """

    task_id: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    survivors: tuple[str, ...]
    """Nodes whose data every secure sum of the query includes."""
    sat_out: Mapping[str, str] = field(default_factory=dict)
    """Nodes that did not contribute, and why (their own words)."""
    min_count: int = 0
    suppressed: int = 0
    """Groups withheld for having fewer than ``min_count`` rows."""
    withheld: tuple[str, ...] = ()
    """Groups some node withheld for holding fewer than its ``min_count`` rows there."""

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | Sequence[Row]:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    @property
    def tables(self) -> list[ResultTable]:
        """The rows as one table."""
        cells = [[_cell(row.get(c)) for c in self.columns] for row in self.rows]
        return [ResultTable(f"task {self.task_id}", list(self.columns), cells)]

    def notes(self) -> list[str]:
        """Who was summed and which groups were withheld."""
        lines = [
            f"secure aggregation over {len(self.survivors)} node(s): {', '.join(self.survivors) or 'none'}; "
            f"groups from fewer than {self.min_count} rows are withheld (-)"
            + (f": {self.suppressed} withheld" if self.suppressed else "")
        ]
        if self.withheld:
            lines.append(withheld_note(self.withheld))
        return lines

    def to_json(self) -> dict[str, Any]:
        """The result as JSON."""
        return {
            "task": self.task_id,
            "columns": list(self.columns),
            "rows": [dict(row) for row in self.rows],
            "survivors": list(self.survivors),
            "sat_out": dict(self.sat_out),
            "min_count": self.min_count,
            "suppressed": self.suppressed,
            "withheld_at_some_nodes": list(self.withheld),
        }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.2f}"
    return str(value)


def compiled(params: QueryParams) -> tuple[Plan, FederationSchema, list[DenseLayout]]:
    """The plan every party computes alike, and the layout of each of its secure sums.

    Compiled once per process for the same query, schema and ``max_rows``: the researcher
    asks for the rounds before submitting and again to finalise, a node's agent for the
    rounds and its worker for the local part.
    """
    digest = _digest(params)
    with _PLANS_LOCK:
        found = _PLANS.get(digest)
        if found is not None:
            _PLANS.move_to_end(digest)
            return found
    found = _compile(params)
    with _PLANS_LOCK:
        _PLANS[digest] = found
        while len(_PLANS) > PLANS_KEPT:
            _PLANS.popitem(last=False)
    return found


PLANS_KEPT = 32
_PLANS: OrderedDict[str, tuple[Plan, FederationSchema, list[DenseLayout]]] = OrderedDict()
_PLANS_LOCK = threading.Lock()


def _digest(params: QueryParams) -> str:
    """What identifies a plan: the query, the schema and ``max_rows``, hashed (a schema may be large)."""
    text = json.dumps([params.sql, params.schema_, params.max_rows], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _compile(params: QueryParams) -> tuple[Plan, FederationSchema, list[DenseLayout]]:
    schema = FederationSchema.model_validate(params.schema_)
    plan = compile_plan(parse_sql(params.sql, schema), schema)
    layouts = [
        DenseLayout.for_aggregate(a, schema, max_rows=params.max_rows) for a in secure_aggregates(plan)
    ]
    if not layouts:
        raise QueryError("the query has no secure sum: nothing would be combined across the nodes")
    return plan, schema, layouts


def encoding_of(layout: DenseLayout, params: QueryParams, parties: int) -> FixedPoint:
    """The fixed-point encoding of one secure sum, the same at every node and the researcher."""
    scale = 10**params.decimals
    bound = max(float(np.max(layout.bounds)), 1.0)  # a cell's withheld flag is 1
    return FixedPoint(scale, bound, parties, min_bits(scale, bound, parties))


def _local(data: DataContext, params: QueryParams) -> LocalFigures:
    party = data.node_id
    plan, _, layouts = compiled(params)
    digest = _digest(params)
    vectors, rows, counts = [], [], []
    members: dict[str, CellRows] = {}
    sources: dict[str, TableSource] = {}  # by the schema's table name
    with _files().cursor() as files:
        for index, (aggregate, layout) in enumerate(zip(secure_aggregates(plan), layouts, strict=True)):
            read, duckdb_sql = _part((digest, party, index), aggregate, layout)
            for table in read:
                if table not in sources:
                    sources[table] = _resolve(data, table, params.sources.get(party, {}).get(table))
            mine = {t: sources[t] for t in read}
            dialect = _one_database(list(mine.values()))
            if dialect is not None:
                sql = local_sql(
                    aggregate, party, layout, dialect=dialect, source=lambda t: f"({sources[t].select})"
                )
                result = data.run_sql(sql, [s.name for s in mine.values()])
            else:
                sql = _with_views(files, data, mine, duckdb_sql)
                result = _execute(files, sql, list(mine)).fetchall()
            check_max_rows(_largest_count(result, layout), params.max_rows, data.min_count, "a group")
            vector = dense_vector(result, layout)
            vectors.append(vector)
            counts.append(element_counts(vector, layout))
            rows.append(int(counts[-1].reshape(layout.groups, -1).max(axis=1, initial=0).sum()))
            found = _members(files, data, aggregate, layout, party, mine)
            if found is not None:
                members[f"q{index}"] = found
    labels = _labels(layouts)
    return LocalFigures.of(
        dict(zip(labels, vectors, strict=True)),
        dict(zip(labels, rows, strict=True)),
        counts=dict(zip(labels, counts, strict=True)),
        members=members,
    )


def _largest_count(rows: Sequence[Sequence[object]], layout: DenseLayout) -> int:
    """The largest COUNT of any group in the local part's rows (0 for none)."""
    at = [len(layout.keys) + j for j, s in enumerate(layout.specs) if s.func.value == "count"]
    counts = [float(v) for r in rows for i in at if len(r) > i and isinstance(v := r[i], int | float)]
    return int(max(counts, default=0.0))


def _members(
    cursor: duckdb.DuckDBPyConnection,
    data: DataContext,
    aggregate: Aggregate,
    layout: DenseLayout,
    party: str,
    mine: Mapping[str, TableSource],
) -> CellRows | None:
    """Which of the node's rows each group of the secure sum comes from, for its differencing check.

    A second pass over the party's rows, in DuckDB over the tables as Arrow (the order
    :meth:`DataContext.row_keys` numbers), with each row's position carried through the
    query's filters; ``None`` where the node keeps no release record for a table.
    """
    keys: list[npt.NDArray[np.uint64]] = []
    offset, sources = 0, dict[str, str]()
    for table, source in mine.items():
        found = data.row_keys(source.name)
        if found is None:
            return None
        arrow = data.table(source.name)
        positions = pa.array(np.arange(offset, offset + arrow.num_rows, dtype=np.int64))
        name = f"m_{len(sources)}_{table}"
        cursor.register(name, arrow.append_column(_ROW, positions))
        sources[table] = f'"{name}"'
        keys.append(found)
        offset += arrow.num_rows
    sql = local_rows_sql(aggregate, party, layout, dialect="duckdb", source=sources.__getitem__, row=_ROW)
    listed = _execute(cursor, sql, list(mine)).fetchnumpy()
    cell = np.zeros(len(listed[_ROW]), dtype=np.int64)
    for i, key in enumerate(layout.keys):
        cell = cell * key.size + np.asarray(listed[f"__bucket_{i}"], dtype=np.int64)
    table = "+".join(sorted(s.name for s in mine.values()))
    return CellRows.of(table, np.concatenate(keys)[np.asarray(listed[_ROW], dtype=np.int64)], cell)


_ROW = "__confide_row"


@lru_cache(maxsize=1)
def _files() -> duckdb.DuckDBPyConnection:
    """This process's DuckDB, where the node's files are scanned through views.

    Opening a DuckDB costs tens of milliseconds, more than the scan of a million rows:
    each step takes a cursor of this one instead, and keeps the views it made.
    """
    return duckdb.connect()


def _part(
    key: tuple[str, str, int], aggregate: Aggregate, layout: DenseLayout
) -> tuple[tuple[str, ...], str]:
    """The tables ``party``'s part of aggregate ``index`` reads, and its DuckDB SQL over their views.

    Deterministic in the query and the party, so written once per process, not per run.
    """
    found = _PARTS.get(key)
    if found is None:
        found = _PARTS[key] = _write_part(aggregate, key[1], layout)
        while len(_PARTS) > PARTS_KEPT:
            _PARTS.pop(next(iter(_PARTS)))
    return found


PARTS_KEPT = 256
_PARTS: dict[tuple[str, str, int], tuple[tuple[str, ...], str]] = {}


def _write_part(aggregate: Aggregate, party: str, layout: DenseLayout) -> tuple[tuple[str, ...], str]:
    read: list[str] = []

    def record(table: str) -> str:
        read.append(table)
        return _view(table)

    sql = local_sql(aggregate, party, layout, dialect="duckdb", source=record)
    return tuple(dict.fromkeys(read)), sql


def _resolve(data: DataContext, table: str, ref: SourceRef | None) -> TableSource:
    """The node's source standing for the schema's ``table``: named by the job, or of that name."""
    if ref is None:
        return data.source(table)
    if ref.table is not None:
        return data.source(ref.table)
    files = data.files()
    found = [name for name, file in files.items() if file == ref.file]
    if len(found) != 1:
        problem = "no" if not found else "more than one"
        raise QueryError(
            f"this node has {problem} declared table in a file named {ref.file!r} (for schema table "
            f"{table!r}); its files: {', '.join(sorted(set(files.values()))) or 'none'}"
        )
    return data.source(found[0])


def _one_database(sources: list[TableSource]) -> str | None:
    """The dialect to push the local part down in, if every table is in one database that has one."""
    databases = {(s.database, s.dialect) for s in sources}
    if len(databases) != 1:
        return None
    database, dialect = databases.pop()
    return dialect if database is not None else None


def _view(table: str) -> str:
    """The placeholder for ``table`` in cached SQL; unguessable, so no literal in a query can match it."""
    return f'"t_{_PLACEHOLDER}_{table}"'


def _with_views(
    cursor: duckdb.DuckDBPyConnection, data: DataContext, sources: dict[str, TableSource], sql: str
) -> str:
    """``sql`` with each table's placeholder view replaced by a view over the node's source.

    A file is scanned by a view named after its SELECT (a view, not a copy: DuckDB pushes
    the query's projections and filters into the scan), made once per process; a table
    read into Arrow is registered on this cursor only.
    """
    for table, source in sources.items():
        if source.database is None:
            name = "f_" + hashlib.sha256(source.select.encode()).hexdigest()[:32]
            _execute(cursor, f'CREATE VIEW IF NOT EXISTS "{name}" AS {source.select}', [source.name])
        else:
            name = f"a_{len(table)}_{table}"
            cursor.register(name, data.table(source.name))
        sql = sql.replace(_view(table), f'"{name}"')
    return sql


def _execute(connection: duckdb.DuckDBPyConnection, sql: str, tables: list[str]) -> duckdb.DuckDBPyConnection:
    """Run ``sql``; an error names the tables and quotes DuckDB only where it names no data."""
    try:
        return connection.execute(sql)
    except (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException) as exc:
        raise QueryError(f"the local part of the query failed at this node: {_first_line(exc)}") from None
    except duckdb.Error as exc:
        # A conversion or CSV error quotes the offending value, and an I/O error the file's
        # path: both stay in the node's log.
        names = ", ".join(repr(t) for t in tables)
        log.error("query.sql over table %s failed: %s", names, exc)
        if isinstance(exc, duckdb.IOException):
            problem = "cannot be read at this node; the node's log names the file"
        else:
            problem = (
                "does not match the types declared for it in the node config; the node's log names "
                "the offending column"
            )
        raise QueryError(f"table {names} {problem}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _labels(layouts: list[DenseLayout]) -> list[str]:
    return [f"q{i}" for i in range(len(layouts))]


def _rounds(params: QueryParams, nodes: Sequence[str]) -> list[SecureRound]:
    _, _, layouts = compiled(params)
    return [
        SecureRound(
            label, layout.length, encoding_of(layout, params, len(nodes)), empty_ok=True, cells=layout.groups
        )
        for label, layout in zip(_labels(layouts), layouts, strict=True)
    ]


def _finalise(params: QueryParams, sums: SecureTotals) -> QueryResult:
    plan, federation, layouts = compiled(params)
    totals = {i: sums.totals[label] for i, label in enumerate(_labels(layouts))}
    return QueryResult(
        task_id=sums.task_id,
        columns=tuple(output_columns(plan.root, federation)),
        rows=tuple(finalise(plan, totals, layouts, min_count=sums.min_count)),
        survivors=sums.summed,
        sat_out=dict(sums.sat_out),
        min_count=sums.min_count,
        suppressed=withheld_groups(totals, layouts, sums.min_count),
        withheld=_withheld_at_nodes(sums, layouts),
    )


def _withheld_at_nodes(sums: SecureTotals, layouts: list[DenseLayout]) -> tuple[str, ...]:
    """The groups (of any of the query's secure sums) that some node withheld."""
    found: dict[str, None] = {}
    for label, layout in zip(_labels(layouts), layouts, strict=True):
        flags = sums.withheld.get(label)
        if flags is None:
            continue
        for group, flag in zip(layout.labels(), flags, strict=True):
            if flag:
                found[", ".join(f"{k}={v}" for k, v in group.items()) or "all rows"] = None
    return tuple(found)


QUERY_SQL = Algorithm(
    name="query.sql",
    description="a federated SQL query: local SQL at each node, combined by secure aggregation",
    params=QueryParams,
    step=_local,
    rounds=_rounds,
    finalise=_finalise,
    echo_params=True,
)
