"""Pass 1, name resolution and type checking: every column exists, every operator gets the right types.

The IR is returned unchanged; what the pass adds is the guarantee the later passes rely
on. Errors name the operator and the column (``group by: unknown column 'sex'; available:
...``).
"""

from __future__ import annotations

from confide.query._columns import ColumnTypes
from confide.query._ir import Relation
from confide.query._schema import FederationSchema

__all__ = ["resolve"]


def resolve(relation: Relation, schema: FederationSchema) -> Relation:
    """Check ``relation`` against ``schema``; :class:`QueryError` on the first problem."""
    ColumnTypes(schema).of(relation)
    return relation
