"""The compiler's passes, in order: each a pure function ``(relation, schema) -> relation``.

1. ``resolve``: name resolution and type checking against the federation's schema;
2. ``push_down``: filters, projections and per-row computations into each party;
3. ``rewrite_aggregates``: MEAN / VAR / STD / CORR into sums of local partials;

then ``place`` turns the result into a :class:`Plan`: each operator local at a party,
a secure sum, or at the receiver, or a :class:`QueryError` saying why it cannot run. Name
resolution types the query as written, and placement the rewritten tree, once each (a
:class:`~confide.query._columns.ColumnTypes` per tree): that is the re-check after
rewriting, and what placement's checks read. Each pass has input / expected fixtures in
``tests/query/fixtures/``.
"""

from collections.abc import Callable

from confide.query._ir import Relation
from confide.query._schema import FederationSchema
from confide.query.passes.place import Placement, Plan, Step, place
from confide.query.passes.push_down import push_down
from confide.query.passes.resolve import resolve
from confide.query.passes.rewrite_aggregates import rewrite_aggregates

__all__ = ["RULES", "Placement", "Plan", "Step", "compile_plan", "place"]

Rule = Callable[[Relation, FederationSchema], Relation]
RULES: tuple[Rule, ...] = (resolve, push_down, rewrite_aggregates)


def compile_plan(relation: Relation, schema: FederationSchema) -> Plan:
    """Run every rule in order, then place the result (which type-checks the rewritten tree again)."""
    for rule in RULES:
        relation = rule(relation, schema)
    return place(relation, schema)
