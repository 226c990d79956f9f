"""The federated query layer: SQL and a Conclave-style DSL compiled to local SQL plus secure sums.

Layout (in dependency order):

- ``_ir``: the typed, immutable IR both front ends build
- ``_schema``: the federation's declared tables, parties, types, domains and bounds
- ``_columns``: what each relation outputs (names, types, domains, bounds, holders)
- ``_sql``: the SQL front end (sqlglot): ``parse_sql(text, schema, to=...)``
- ``_dsl``: the Conclave-style Python DSL (``defCol``, ``create``, ``concat``, ``aggregate``, ...)
- ``passes``: the compiler, as ordered pure passes (``RULES``) and placement (``place``)
- ``_generate``: each party's local part of a secure sum as SQL in its source's dialect
  (DuckDB for CSV / Parquet, PostgreSQL), the dense vector over the declared domains, and
  the receiver's finalisation

Not built yet: running a plan through the nodes (a node-side algorithm, the secure sum,
``confide query`` executing rather than explaining), job specs, worked examples.
"""
