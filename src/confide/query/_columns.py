"""What every relation of a query outputs: column names, types, domains, bounds and holders.

Computed bottom-up from the federation's schema. The compiler passes ask it instead of
annotating the immutable IR: name resolution and type checking raise here, GROUP BY
domains come from here, and so do the numeric bounds a secure sum needs (carried through
arithmetic by interval arithmetic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from confide._errors import QueryError
from confide.query._ir import (
    AggFunc,
    Aggregate,
    BinaryOp,
    BoolExpr,
    Collect,
    ColumnRef,
    ColumnType,
    Compare,
    Compute,
    Concat,
    Expr,
    Filter,
    Join,
    Literal,
    Not,
    Project,
    Relation,
    Scan,
    Sqrt,
)
from confide.query._schema import ColumnSchema, FederationSchema

__all__ = ["ColumnInfo", "expr_info", "output_columns", "parties_of"]


@dataclass(frozen=True)
class ColumnInfo:
    """One output column: its type, declared domain (for GROUP BY), bounds (for secure sums)."""

    type: ColumnType
    domain: ColumnSchema | None = None
    bounds: tuple[float, float] | None = None
    aggregated: bool = False  # the result of an aggregate over (possibly) several parties


def parties_of(relation: Relation) -> frozenset[str]:
    """Every party whose data flows into ``relation``."""
    match relation:
        case Scan(_, party):
            return frozenset({party})
        case Concat(inputs):
            return frozenset().union(*(parties_of(r) for r in inputs))
        case Join(left, right, _):
            return parties_of(left) | parties_of(right)
        case Project() | Filter() | Compute() | Aggregate() | Collect():
            return parties_of(relation.input)


def output_columns(relation: Relation, schema: FederationSchema) -> dict[str, ColumnInfo]:
    """The columns ``relation`` outputs, in order; :class:`QueryError` on any name or type error."""
    match relation:
        case Scan(table, party):
            declared = schema.table(table)
            if party not in declared.parties:
                raise QueryError(
                    f"table {table!r} is not held by {party!r}; it is at: {', '.join(declared.parties)}"
                )
            return {
                name: ColumnInfo(c.type, c if c.has_domain else None, c.bounds)
                for name, c in declared.columns.items()
            }
        case Concat(inputs):
            return _concat(inputs, schema)
        case Project(source, columns):
            available = output_columns(source, schema)
            return {name: _column(available, name, "project") for name in columns}
        case Filter(source, predicate):
            available = output_columns(source, schema)
            if expr_info(predicate, available).type is not ColumnType.BOOL:
                raise QueryError("filter: the predicate is not a true/false condition")
            return available
        case Compute(source, name, expr):
            available = output_columns(source, schema)
            if name in available:
                raise QueryError(f"compute: column {name!r} exists already")
            return {**available, name: expr_info(expr, available)}
        case Aggregate(source, group_by, aggregates):
            return _aggregate(output_columns(source, schema), group_by, aggregates)
        case Join(left, right, on):
            return _join(output_columns(left, schema), output_columns(right, schema), on)
        case Collect(source, _, _):
            return output_columns(source, schema)


def _column(available: dict[str, ColumnInfo], name: str, where: str) -> ColumnInfo:
    found = available.get(name)
    if found is None:
        raise QueryError(f"{where}: unknown column {name!r}; available: {', '.join(available)}")
    return found


def _concat(inputs: tuple[Relation, ...], schema: FederationSchema) -> dict[str, ColumnInfo]:
    if not inputs:
        raise QueryError("concat: no relations to combine")
    shapes = [output_columns(r, schema) for r in inputs]
    first = shapes[0]

    def shape(columns: dict[str, ColumnInfo]) -> list[tuple[str, str]]:
        return [(n, c.type.value) for n, c in columns.items()]

    for other in shapes[1:]:
        if shape(other) != shape(first):
            raise QueryError(
                f"concat: the relations differ in columns or types: {shape(first)} vs {shape(other)}"
            )
    return first


# Aggregates that take a second column: CORR and SUM_PRODUCTS over it, the others only
# over the rows where it is not NULL (see AggregateSpec).
_PAIRED = frozenset({AggFunc.CORR, AggFunc.SUM_PRODUCTS, AggFunc.COUNT, AggFunc.SUM, AggFunc.SUM_SQUARES})


def _aggregate(
    available: dict[str, ColumnInfo], group_by: tuple[str, ...], aggregates: tuple[object, ...]
) -> dict[str, ColumnInfo]:
    out = {name: replace(_column(available, name, "group by"), aggregated=True) for name in group_by}
    for spec in aggregates:
        func, column, name, other = spec.func, spec.column, spec.out, spec.other  # type: ignore[attr-defined]
        source = None if column is None else _column(available, column, f"{func.value}({column})")
        if other is not None:
            second = _column(available, other, f"{func.value}({column}, {other})")
            if func not in _PAIRED or column is None:
                raise QueryError(f"{func.value} takes one column, not ({column}, {other})")
            if func in (AggFunc.CORR, AggFunc.SUM_PRODUCTS) and not second.type.numeric:
                raise QueryError(f"{func.value} needs numeric columns, not {other!r} ({second.type.value})")
        if func not in (AggFunc.COUNT, AggFunc.COUNT_DISTINCT) and (
            source is None or not source.type.numeric
        ):
            what = "no column" if source is None else f"{column!r} ({source.type.value})"
            raise QueryError(f"{func.value} needs a numeric column, not {what}")
        if name in out:
            raise QueryError(f"aggregate: output column {name!r} appears twice")
        out[name] = ColumnInfo(_aggregate_type(func, source), aggregated=True)
    return out


def _aggregate_type(func: AggFunc, source: ColumnInfo | None) -> ColumnType:
    if func in (AggFunc.COUNT, AggFunc.COUNT_DISTINCT):
        return ColumnType.INT
    if func in (AggFunc.SUM, AggFunc.MIN, AggFunc.MAX) and source is not None:
        return source.type
    return ColumnType.FLOAT


def _join(
    left: dict[str, ColumnInfo], right: dict[str, ColumnInfo], on: tuple[tuple[str, str], ...]
) -> dict[str, ColumnInfo]:
    for a, b in on:
        if _column(left, a, "join").type is not _column(right, b, "join").type:
            raise QueryError(f"join: {a!r} and {b!r} have different types")
    clash = (left.keys() & right.keys()) - {b for a, b in on if a == b}
    if clash:
        raise QueryError(f"join: both sides have columns {sorted(clash)}; project or rename one side")
    return {**left, **{n: c for n, c in right.items() if n not in left}}


def expr_info(expr: Expr, available: dict[str, ColumnInfo]) -> ColumnInfo:
    """Type (and bounds, by interval arithmetic) of ``expr`` over ``available`` columns."""
    match expr:
        case ColumnRef(name):
            return _column(available, name, "expression")
        case Literal(value):
            return _literal(value)
        case BinaryOp(op, left, right):
            a, b = expr_info(left, available), expr_info(right, available)
            if not (a.type.numeric and b.type.numeric):
                raise QueryError(f"arithmetic {op!r} needs numbers, not {a.type.value} and {b.type.value}")
            kind = ColumnType.INT if a.type is b.type is ColumnType.INT and op != "/" else ColumnType.FLOAT
            return ColumnInfo(kind, None, _interval(op, a.bounds, b.bounds), a.aggregated or b.aggregated)
        case Sqrt(operand):
            inner = expr_info(operand, available)
            if not inner.type.numeric:
                raise QueryError(f"sqrt needs a number, not {inner.type.value}")
            bounds = (
                None
                if inner.bounds is None
                else (math.sqrt(max(0.0, inner.bounds[0])), math.sqrt(max(0.0, inner.bounds[1])))
            )
            return ColumnInfo(ColumnType.FLOAT, None, bounds, inner.aggregated)
        case Compare(op, left, right):
            a, b = expr_info(left, available), expr_info(right, available)
            if not (a.type.numeric and b.type.numeric) and a.type is not b.type:
                raise QueryError(f"comparison {op.value!r} of {a.type.value} with {b.type.value}")
            return ColumnInfo(ColumnType.BOOL)
        case BoolExpr(op, operands):
            for operand in operands:
                if expr_info(operand, available).type is not ColumnType.BOOL:
                    raise QueryError(f"{op.value!r} needs true/false operands")
            return ColumnInfo(ColumnType.BOOL)
        case Not(operand):
            if expr_info(operand, available).type is not ColumnType.BOOL:
                raise QueryError("'not' needs a true/false operand")
            return ColumnInfo(ColumnType.BOOL)


def _literal(value: object) -> ColumnInfo:
    if isinstance(value, bool):
        return ColumnInfo(ColumnType.BOOL)
    if isinstance(value, int):
        return ColumnInfo(ColumnType.INT, None, (float(value), float(value)))
    if isinstance(value, float):
        return ColumnInfo(ColumnType.FLOAT, None, (value, value))
    return ColumnInfo(ColumnType.STR)


def _interval(
    op: str, a: tuple[float, float] | None, b: tuple[float, float] | None
) -> tuple[float, float] | None:
    if a is None or b is None:
        return None
    if op == "+":
        return (a[0] + b[0], a[1] + b[1])
    if op == "-":
        return (a[0] - b[1], a[1] - b[0])
    if op == "/":
        if b[0] <= 0 <= b[1]:
            return None  # the divisor may be zero: no bound
        b = (1 / b[1], 1 / b[0])
    corners = [x * y for x in a for y in b]
    return (min(corners), max(corners))
