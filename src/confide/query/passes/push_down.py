"""Pass 2, push-down: filters, projections and per-row computations move into each party.

``Filter(Concat(a, b))`` becomes ``Concat(Filter(a), Filter(b))`` (and likewise for
``Project`` and ``Compute``), repeatedly, so that everything row-level runs in the clear
inside the hospital that holds the rows, as local SQL, and only aggregates leave it.
"""

from __future__ import annotations

from dataclasses import replace

from confide.query._ir import Aggregate, Collect, Compute, Concat, Filter, Join, Project, Relation, Scan
from confide.query._schema import FederationSchema

__all__ = ["push_down"]


def push_down(relation: Relation, schema: FederationSchema) -> Relation:
    """``relation`` with row-level operators moved below every ``Concat``."""
    match relation:
        case Scan():
            return relation
        case Concat(inputs):
            return Concat(tuple(push_down(r, schema) for r in inputs))
        case Join(left, right, on):
            return Join(push_down(left, schema), push_down(right, schema), on)
        case Filter() | Project() | Compute():
            inner = push_down(relation.input, schema)
            if isinstance(inner, Concat):
                return Concat(tuple(push_down(replace(relation, input=r), schema) for r in inner.inputs))
            return replace(relation, input=inner)
        case Aggregate() | Collect():
            return replace(relation, input=push_down(relation.input, schema))
