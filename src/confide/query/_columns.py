"""What every relation of a query outputs: column names, types, domains, bounds and holders.

Computed bottom-up from the federation's schema. The compiler passes ask it instead of
annotating the immutable IR: name resolution and type checking raise here, GROUP BY
domains come from here, and so do the numeric bounds a secure sum needs (carried through
arithmetic by interval arithmetic). A pass asks a :class:`ColumnTypes`, which computes each
relation once; :func:`output_columns` is the one-off question.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from confide._errors import QueryError
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
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
    children,
)
from confide.query._schema import ColumnSchema, FederationSchema

__all__ = ["ColumnInfo", "ColumnTypes", "Columns", "expr_info", "output_columns", "parties_of"]


@dataclass(frozen=True)
class ColumnInfo:
    """One output column: its type, declared domain (for GROUP BY), bounds (for secure sums)."""

    type: ColumnType
    domain: ColumnSchema | None = None
    bounds: tuple[float, float] | None = None
    aggregated: bool = False  # the result of an aggregate over (possibly) several parties


Columns = Mapping[str, ColumnInfo]
"""A relation's output columns, in order (read-only: :class:`ColumnTypes` shares them)."""


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
    return dict(ColumnTypes(schema).of(relation))


class ColumnTypes:
    """What the relations of a query output under one schema, each relation computed once.

    A compile asks for the same subtrees' columns again and again: placement checks every
    secure sum's input and the result's columns, and a ``WITH`` query read twice is one
    subtree in two places. The IR is immutable, so what a relation outputs never changes:
    it is kept per relation object. By identity, not by value: a frozen dataclass hashes
    its whole subtree on every lookup, which costs more than the typing it would save. The
    relations are held too, so no id is reused while the memo lives. One instance serves
    one pass over one schema; nothing is shared between compiles.
    """

    def __init__(self, schema: FederationSchema) -> None:
        self.schema = schema
        self._columns: dict[int, tuple[Relation, Columns]] = {}
        self._parties: dict[int, tuple[Relation, frozenset[str]]] = {}

    def of(self, relation: Relation) -> Columns:
        """The columns ``relation`` outputs, in order; :class:`QueryError` on any name or type error."""
        found = self._columns.get(id(relation))
        if found is None:
            found = self._columns[id(relation)] = (relation, self._compute(relation))
        return found[1]

    def parties(self, relation: Relation) -> frozenset[str]:
        """Every party whose data flows into ``relation`` (as :func:`parties_of`)."""
        found = self._parties.get(id(relation))
        if found is None:
            inputs = children(relation)
            parties = frozenset({relation.party}) if isinstance(relation, Scan) else frozenset()
            found = self._parties[id(relation)] = (relation, parties.union(*map(self.parties, inputs)))
        return found[1]

    def _compute(self, relation: Relation) -> Columns:
        match relation:
            case Scan(table, party):
                return _scan(self.schema, table, party)
            case Concat(inputs):
                return _concat([self.of(r) for r in inputs])
            case Project(source, columns):
                available = self.of(source)
                return {name: _column(available, name, "project") for name in columns}
            case Filter(source, predicate):
                available = self.of(source)
                if expr_info(predicate, available).type is not ColumnType.BOOL:
                    raise QueryError("filter: the predicate is not a true/false condition")
                return available
            case Compute(source, name, expr):
                available = self.of(source)
                if name in available:
                    raise QueryError(f"compute: column {name!r} exists already")
                return {**available, name: expr_info(expr, available)}
            case Aggregate(source, group_by, aggregates):
                return _aggregate(self.of(source), group_by, aggregates)
            case Join(left, right, on):
                return _join(self.of(left), self.of(right), on)
            case Collect(source, _, _):
                return self.of(source)


def _scan(schema: FederationSchema, table: str, party: str) -> Columns:
    declared = schema.table(table)
    if party not in declared.parties:
        raise QueryError(f"table {table!r} is not held by {party!r}; it is at: {', '.join(declared.parties)}")
    return {
        name: ColumnInfo(column.type, column if column.has_domain else None, column.bounds)
        for name, column in declared.columns.items()
    }


def _column(available: Columns, name: str, where: str) -> ColumnInfo:
    found = available.get(name)
    if found is None:
        raise QueryError(f"{where}: unknown column {name!r}; available: {', '.join(available)}")
    return found


def _concat(shapes: list[Columns]) -> Columns:
    if not shapes:
        raise QueryError("concat: no relations to combine")
    first = shapes[0]

    def shape(columns: Columns) -> list[tuple[str, str]]:
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
    available: Columns, group_by: tuple[str, ...], aggregates: tuple[AggregateSpec, ...]
) -> Columns:
    out = {name: replace(_column(available, name, "group by"), aggregated=True) for name in group_by}
    for spec in aggregates:
        func, column, name, other = spec.func, spec.column, spec.out, spec.other
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


def _join(left: Columns, right: Columns, on: tuple[tuple[str, str], ...]) -> Columns:
    for a, b in on:
        if _column(left, a, "join").type is not _column(right, b, "join").type:
            raise QueryError(f"join: {a!r} and {b!r} have different types")
    clash = (left.keys() & right.keys()) - {b for a, b in on if a == b}
    if clash:
        raise QueryError(f"join: both sides have columns {sorted(clash)}; project or rename one side")
    return {**left, **{n: c for n, c in right.items() if n not in left}}


def expr_info(expr: Expr, available: Columns) -> ColumnInfo:
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
