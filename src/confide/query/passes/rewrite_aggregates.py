"""Pass 3, aggregate rewriting: MEAN, VAR, STD and CORR become sums of local partials.

A secure sum can only add. ``MEAN(x)`` is ``SUM(x) / COUNT(x)``; the sample variance is
``(SUM(x^2) - SUM(x)^2 / n) / (n - 1)``; the standard deviation its square root;
``CORR(x, y)`` the usual ratio of centred sums of products. The pass replaces each by the
sums it needs (``COUNT``, ``SUM``, ``SUM_SQUARES``, ``SUM_PRODUCTS``, named ``__f_col``; for
CORR over the complete pairs only, ``__f_x_y``),
then a ``Compute`` per derived output over the aggregated row and a ``Project`` back to
the query's columns: the finalisation the receiver runs in the clear.

An aggregate over the parties' rows with no COUNT of its own (``SUM(x)`` alone) gets a
hidden ``COUNT(*)``: every node checks the rows it contributes against its ``min_count``,
and the receiver withholds a group fewer rows than that make up, whatever the query asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
    ColumnRef,
    Compute,
    Concat,
    Expr,
    Join,
    Literal,
    Project,
    Relation,
    Scan,
    Sqrt,
)
from confide.query._schema import FederationSchema

__all__ = ["rewrite_aggregates"]

Need = Callable[..., ColumnRef]
_SUMMABLE = frozenset({AggFunc.COUNT, AggFunc.SUM, AggFunc.SUM_SQUARES, AggFunc.SUM_PRODUCTS})
_DERIVED = frozenset({AggFunc.MEAN, AggFunc.VAR, AggFunc.STD, AggFunc.VAR_POP, AggFunc.STD_POP, AggFunc.CORR})


def rewrite_aggregates(relation: Relation, schema: FederationSchema) -> Relation:
    """``relation`` with every derived aggregate expressed through sums."""
    match relation:
        case Scan():
            return relation
        case Concat(inputs):
            return Concat(tuple(rewrite_aggregates(r, schema) for r in inputs))
        case Join(left, right, on):
            return Join(rewrite_aggregates(left, schema), rewrite_aggregates(right, schema), on)
        case Aggregate(source, group_by, specs) if any(s.func in _DERIVED for s in specs) or (
            _uncounted(relation)
        ):
            return _rewrite(Aggregate(rewrite_aggregates(source, schema), group_by, specs))
        case Aggregate():
            return Aggregate(
                rewrite_aggregates(relation.input, schema), relation.group_by, relation.aggregates
            )
        case _:
            return replace(relation, input=rewrite_aggregates(relation.input, schema))


def _rewrite(aggregate: Aggregate) -> Relation:
    base: dict[str, AggregateSpec] = {}

    def need(func: AggFunc, column: str | None, other: str | None = None) -> ColumnRef:
        name = f"__{func.value}_{column or 'rows'}" + (f"_{other}" if other else "")
        base.setdefault(name, AggregateSpec(func, column, name, other))
        return ColumnRef(name)

    finals: list[tuple[str, Expr | None]] = []
    for spec in aggregate.aggregates:
        if spec.func in _SUMMABLE or spec.func not in _DERIVED:
            base.setdefault(spec.out, spec)
            finals.append((spec.out, None))
            continue
        finals.append((spec.out, _derived(spec, need)))
    if _uncounted(Aggregate(aggregate.input, aggregate.group_by, tuple(base.values()))):
        need(AggFunc.COUNT, None)  # every secure sum counts its rows, for the parties' min_count
    result: Relation = Aggregate(aggregate.input, aggregate.group_by, tuple(base.values()))
    for name, expr in finals:
        if expr is not None:
            result = Compute(result, name, expr)
    return Project(result, (*aggregate.group_by, *(name for name, _ in finals)))


def _uncounted(aggregate: Aggregate) -> bool:
    """An aggregate over the parties' rows (a secure sum, after push-down) that counts none."""
    over_rows = isinstance(aggregate.input, Concat)
    return over_rows and not any(spec.func is AggFunc.COUNT for spec in aggregate.aggregates)


def _derived(spec: AggregateSpec, need: Need) -> Expr:
    if spec.func is AggFunc.CORR:
        return _corr(spec, need)
    n = need(AggFunc.COUNT, spec.column)
    s = need(AggFunc.SUM, spec.column)
    if spec.func is AggFunc.MEAN:
        return BinaryOp("/", s, n)
    ss = need(AggFunc.SUM_SQUARES, spec.column)
    centred = BinaryOp("-", ss, BinaryOp("/", BinaryOp("*", s, s), n))
    divisor: Expr = n if spec.func in (AggFunc.VAR_POP, AggFunc.STD_POP) else BinaryOp("-", n, Literal(1))
    variance = BinaryOp("/", centred, divisor)
    return Sqrt(variance) if spec.func in (AggFunc.STD, AggFunc.STD_POP) else variance


def _corr(spec: AggregateSpec, need: Need) -> Expr:
    # SQL's CORR skips a row where x or y is NULL, so every sum runs over the same complete
    # pairs: counted and summed "where the other is present too" (``need``'s third argument),
    # as SUM(x * y) is by itself. Sums over each column's own non-NULL rows would mix row sets.
    x, y = spec.column, spec.other
    n = need(AggFunc.COUNT, x, y)
    sx, sy = need(AggFunc.SUM, x, y), need(AggFunc.SUM, y, x)
    sxx, syy = need(AggFunc.SUM_SQUARES, x, y), need(AggFunc.SUM_SQUARES, y, x)
    sxy = need(AggFunc.SUM_PRODUCTS, x, y)
    cov = BinaryOp("-", sxy, BinaryOp("/", BinaryOp("*", sx, sy), n))
    vx = BinaryOp("-", sxx, BinaryOp("/", BinaryOp("*", sx, sx), n))
    vy = BinaryOp("-", syy, BinaryOp("/", BinaryOp("*", sy, sy), n))
    return BinaryOp("/", cov, Sqrt(BinaryOp("*", vx, vy)))
