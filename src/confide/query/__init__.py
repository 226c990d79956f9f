"""The federated query layer: SQL and a Conclave-style DSL compiled to local SQL plus secure sums.

Layout (in dependency order):

- ``_ir``: the typed, immutable IR both front ends build
- ``_schema``: the federation's declared tables, parties, types, domains and bounds
- ``_columns``: what each relation outputs (names, types, domains, bounds, holders),
  computed once per relation by a ``ColumnTypes``
- ``_sql``: the SQL front end (sqlglot): ``parse_sql(text, schema, to=...)``; the statement
  and its SELECT lists, reading FROM and JOIN with ``_sql_from``, expressions and aggregate
  calls with ``_sql_expr``, sqlglot's nodes with ``_sql_nodes``
- ``_dsl``: the Conclave-style Python DSL: its values (``Rel``, ``Query``), ``defCol`` and
  ``create``; ``_dsl_operators``: ``concat``, ``project``, ``filter``, ``multiply``,
  ``divide``, ``join``, ``collect``; ``_dsl_aggregate``: ``aggregate`` and its variants
- ``passes``: the compiler, as ordered pure passes (``RULES``) and placement (``place``)
- ``_layout``: a secure sum's dense vector over the declared domains (``DenseLayout``,
  ``secure_aggregates``, ``dense_vector``), and the steps of a secure sum end to end
- ``_local_sql``: each party's local part of a secure sum as SQL in its source's dialect
  (DuckDB for CSV / Parquet, PostgreSQL)
- ``_receiver``: the receiver's finalisation over the summed vectors (``finalise``,
  ``withheld_groups``)

``passes.reveal`` is placement's check that an operator at the receiver combining groups
(a total over companies, HHI) reads only aggregates the query reveals. A plan runs through
the nodes as ``query.sql`` (:mod:`confide.algorithms.federated_query`); worked examples with
data generators are in the repository's ``examples/``.
"""

from confide._errors import QueryError
from confide.query._columns import output_columns
from confide.query._dsl import Query, Rel, col, create, defCol
from confide.query._dsl_aggregate import aggregate, aggregate_count, aggregate_many
from confide.query._dsl_operators import collect, concat, divide, filter, join, multiply, project
from confide.query._ir import Aggregate, ColumnType
from confide.query._layout import DenseLayout, dense_vector, element_counts, secure_aggregates
from confide.query._local_sql import local_rows_sql, local_sql
from confide.query._receiver import finalise, withheld_groups
from confide.query._schema import FederationSchema, load_schema
from confide.query._sql import parse_sql
from confide.query.passes import Plan, compile_plan

__all__ = [
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
    "divide",
    "element_counts",
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
]
