"""``query.sql``: a federated SQL query, compiled at every node, combined by secure sums.

Every node compiles the same query against the same federation schema (both in the
sealed task parameters), so all nodes agree on the plan without trusting the hub. Then:

1. the worker runs, for each secure-sum aggregate of the plan, this node's local part as
   DuckDB SQL over the node's own declared tables (registered as Arrow tables, so the
   node's schema checks apply) and turns the rows into a dense vector over the declared
   domains (:mod:`confide.query._generate`); the researcher's SQL text itself never runs;
2. the node applies its ``min_count`` to the rows it contributes and sits out otherwise;
3. each vector is fixed-point encoded and added by secure aggregation (round ``q<i>``);
4. the researcher's client compiles the plan again, removes the pads, decodes and
   finalises at the receiver (``Client.run_query``).
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import ConfideError, PolicyError, QueryError
from confide.algorithms._registry import Algorithm, DataContext, PeerContext
from confide.crypto import FixedPoint, min_bits
from confide.query._generate import DenseLayout, dense_vector, local_sql, secure_aggregates
from confide.query._schema import FederationSchema
from confide.query._sql import parse_sql
from confide.query.passes import Plan, compile_plan

__all__ = ["QUERY_SQL", "QueryContribution", "QueryParams", "compiled", "encoding_of"]


class QueryParams(BaseModel):
    """The query, the federation's schema, and the fixed-point resolution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str = Field(min_length=1, max_length=100_000)
    schema_: dict[str, Any] = Field(alias="schema")
    decimals: int = Field(default=3, ge=0, le=9)
    max_rows: int = Field(default=10_000_000, ge=1, le=10**12)
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
    plan, schema, layouts = compiled(params)
    vectors, rows = [], []
    with duckdb.connect() as connection:
        for table in schema.tables:
            if table in data.table_names():
                connection.register(f"t_{table}", data.table(table))
        for aggregate, layout in zip(secure_aggregates(plan), layouts, strict=True):
            sql = local_sql(aggregate, params.party, layout, dialect="duckdb", source=lambda t: f'"t_{t}"')
            try:
                result = connection.execute(sql).fetchall()
            except duckdb.Error as exc:
                raise QueryError(f"the local part of the query failed at this node: {exc}") from None
            vector = dense_vector(result, layout)
            vectors.append(vector.tolist())
            counts = [j for j, s in enumerate(layout.specs) if s.func.value == "count"]
            per_group = vector.reshape(layout.groups, len(layout.specs))
            rows.append(int(per_group[:, counts].max(axis=1).sum()) if counts else 0)
    return LocalVectors(vectors=vectors, rows=rows)


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
