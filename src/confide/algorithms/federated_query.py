"""``query.sql``: a federated SQL query, compiled at every node, combined by secure sums.

Every node compiles the same query against the same federation schema (both in the
sealed task parameters), so all nodes agree on the plan without trusting the hub. Then:

1. the worker runs, for each secure-sum aggregate of the plan, this node's local part as
   SQL where the data is, and turns the rows into a dense vector over the declared domains
   (:mod:`confide.query._generate`); the researcher's SQL text itself never runs. Each table
   is read through the node's SELECT of its declared columns (``DataContext.source``): if
   every table of the part is in one database the generator writes SQL for (PostgreSQL,
   SQLite), the part runs there (``DataContext.run_sql``); otherwise in DuckDB, over views
   that scan the CSV and Parquet files directly (so DuckDB pushes projections and filters
   into the scan) and over the other tables read into Arrow;
2. the node applies its ``min_count`` to the rows it contributes and sits out otherwise;
3. each vector is fixed-point encoded and added by secure aggregation (round ``q<i>``);
4. the researcher's client compiles the plan again, removes the pads, decodes and
   finalises at the receiver (``Client.run_query``).
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from confide._errors import ConfideError, PolicyError, QueryError
from confide.algorithms._registry import Algorithm, DataContext, PeerContext, TableSource
from confide.crypto import FixedPoint, min_bits
from confide.query import (
    Aggregate,
    DenseLayout,
    FederationSchema,
    Plan,
    compile_plan,
    dense_vector,
    local_sql,
    parse_sql,
    secure_aggregates,
)

__all__ = ["QUERY_SQL", "QueryContribution", "QueryParams", "SourceRef", "compiled", "encoding_of"]

log = logging.getLogger("confide.algorithms.query")


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
    party: str | None = Field(default=None, description="set by the node itself, never by the researcher")
    timeout_s: float = Field(default=300.0, gt=0, le=3600)


class LocalVectors(BaseModel):
    """This node's dense vectors, one per secure sum, and the rows each covers."""

    model_config = ConfigDict(extra="forbid")

    vectors: list[list[float]]
    rows: list[int]


class QueryContribution(BaseModel):
    """What a node reports to the researcher (sealed): which rounds it joined."""

    model_config = ConfigDict(extra="forbid")

    node: str
    rounds: list[str]
    survivors: list[list[str]]
    min_count: int


def compiled(params: QueryParams) -> tuple[Plan, FederationSchema, list[DenseLayout]]:
    """The plan every party computes alike, and the layout of each of its secure sums."""
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
    bound = float(np.max(layout.bounds))
    return FixedPoint(scale, bound, parties, min_bits(scale, bound, parties))


def _local(data: DataContext, params: QueryParams) -> LocalVectors:
    if params.party is None:
        raise QueryError("query.sql runs its local part only inside a node's protocol")
    party = params.party
    plan, _, layouts = compiled(params)
    vectors, rows = [], []
    sources: dict[str, TableSource] = {}  # by the schema's table name
    attached: set[str] = set()
    with duckdb.connect() as files:
        for aggregate, layout in zip(secure_aggregates(plan), layouts, strict=True):
            read = _tables_read(aggregate, party, layout)
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
                _attach(files, data, mine, attached)
                sql = local_sql(aggregate, party, layout, dialect="duckdb", source=_view)
                result = _execute(files, sql, list(mine)).fetchall()
            vector = dense_vector(result, layout)
            vectors.append(vector.tolist())
            counts = [j for j, s in enumerate(layout.specs) if s.func.value == "count"]
            per_group = vector.reshape(layout.groups, len(layout.specs))
            rows.append(int(per_group[:, counts].max(axis=1).sum()) if counts else 0)
    return LocalVectors(vectors=vectors, rows=rows)


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


def _tables_read(aggregate: Aggregate, party: str, layout: DenseLayout) -> list[str]:
    """The tables ``party``'s local part of ``aggregate`` scans, in order."""
    read: list[str] = []

    def record(table: str) -> str:
        read.append(table)
        return '"t"'

    local_sql(aggregate, party, layout, dialect="duckdb", source=record)
    return list(dict.fromkeys(read))


def _one_database(sources: list[TableSource]) -> str | None:
    """The dialect to push the local part down in, if every table is in one database that has one."""
    databases = {(s.database, s.dialect) for s in sources}
    if len(databases) != 1:
        return None
    database, dialect = databases.pop()
    return dialect if database is not None else None


def _view(table: str) -> str:
    return f'"t_{table}"'


def _attach(
    connection: duckdb.DuckDBPyConnection,
    data: DataContext,
    sources: dict[str, TableSource],
    attached: set[str],
) -> None:
    """Make each table readable in DuckDB: a view scanning its file, or its rows read into Arrow."""
    for table, source in sources.items():
        if table in attached:
            continue
        if source.database is None:
            # A view, not a copy: DuckDB pushes the query's projections and filters into the scan.
            _execute(connection, f"CREATE VIEW {_view(table)} AS {source.select}", [source.name])
        else:
            connection.register(_view(table)[1:-1], data.table(source.name))
        attached.add(table)


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


async def _protocol(peers: PeerContext, params: QueryParams) -> QueryContribution:
    _, _, layouts = compiled(params)
    encodings = [encoding_of(layout, params, len(peers.nodes)) for layout in layouts]
    labels = [f"q{i}" for i in range(len(layouts))]
    try:
        local = LocalVectors.model_validate(
            await peers.local({**params.model_dump(by_alias=True), "party": peers.node_id})
        )
        small = [r for r in local.rows if 0 < r < peers.min_count]
        if small:
            raise PolicyError(
                f"node {peers.node_id!r} has {small[0]} rows for this query, fewer than its min_count "
                f"{peers.min_count}; it does not contribute"
            )
        encoded = [e.encode(np.asarray(v)) for e, v in zip(encodings, local.vectors, strict=True)]
    except ConfideError as exc:
        for label, layout, encoding in zip(labels, layouts, encodings, strict=True):
            await peers.withdraw_from_sum(layout.length, str(exc), label=label, bits=encoding.bits)
        raise
    survivors = []
    for label, encoding, vector in zip(labels, encodings, encoded, strict=True):
        outcome = await peers.secure_sum(vector, label=label, bits=encoding.bits, timeout_s=params.timeout_s)
        survivors.append(list(outcome.survivors))
    return QueryContribution(
        node=peers.node_id, rounds=labels, survivors=survivors, min_count=peers.min_count
    )


QUERY_SQL = Algorithm(
    name="query.sql",
    description="a federated SQL query: local SQL at each node, combined by secure aggregation",
    params=QueryParams,
    output=QueryContribution,
    step=_local,
    protocol=_protocol,
    local=LocalVectors,
)
