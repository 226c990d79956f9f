"""The federated query layer: SQL and a Conclave-style DSL compiled to local SQL plus secure sums.

Layout (in dependency order):

- ``_ir``: the typed, immutable IR both front ends build
- ``_schema``: the federation's declared tables, parties, types, domains and bounds
- ``_columns``: what each relation outputs (names, types, domains, bounds, holders)
- ``passes``: the compiler, as ordered pure passes (``RULES``) and placement (``place``)
"""
