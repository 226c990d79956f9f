"""The compiler's passes, in order: each a pure function ``(relation, schema) -> relation``.

1. ``resolve``: name resolution and type checking against the federation's schema;
2. ``push_down``: filters, projections and per-row computations into each party;
3. ``rewrite_aggregates``: MEAN / VAR / STD / CORR into sums of local partials;

then ``place`` turns the result into a :class:`Plan`: each operator local at a party,
a secure sum, or at the receiver, or a :class:`QueryError` saying why it cannot run.
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
    """Run every rule in order, check the result again, and place it."""
    for rule in RULES:
        relation = rule(relation, schema)
    resolve(relation, schema)  # the rewritten tree must still type-check
    return place(relation, schema)
