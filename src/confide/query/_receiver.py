"""Step 5 of a secure sum (see :mod:`._layout`): the receiver's interpreter over the revealed totals.

Where it sits: at the end, at the researcher (``query.sql``'s finalise in
:mod:`confide.algorithms.federated_query`). The protocol reveals each secure sum's total
vector; :func:`finalise` reads every group's cells out of it by the dense layout and
evaluates the plan's operators placed at the receiver (means from sums and counts,
variances, ratios, HAVING, joins of groups, totals over groups) in plain Python, with
SQL's NULL semantics. A group fewer rows than ``min_count`` make up is withheld, and so is
everything computed from it (:data:`WITHHELD`); :func:`withheld_groups` counts them.
"""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from confide._errors import QueryError
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
    BoolExpr,
    BoolOp,
    Collect,
    ColumnRef,
    Compare,
    CompareOp,
    Compute,
    Expr,
    Filter,
    Join,
    Literal,
    Not,
    Project,
    Relation,
    Sqrt,
)
from confide.query._layout import DenseLayout, Vector, check_layout, secure_aggregates
from confide.query.passes.place import Plan

__all__ = ["WITHHELD", "Row", "finalise", "withheld_groups"]

Row = dict[str, object]


def finalise(
    plan: Plan, totals: Mapping[int, Vector], layouts: Sequence[DenseLayout], *, min_count: int = 0
) -> list[Row]:
    """The query's result rows, from the secure sums' totals, in group order.

    Parameters
    ----------
    plan
        The placed query.
    totals
        The summed vector of each of :func:`secure_aggregates` (``plan``), by its index there.
    layouts
        Their layouts, in the same order.
    min_count
        A secure sum's group with fewer rows than this (its largest COUNT) is withheld: its
        cells are None, and so is anything the receiver computes from them (a ratio, a
        total over groups); a comparison with a withheld cell is unknown, as with NULL.

    Returns
    -------
    list of dict
        One dict per result row, columns in the query's order. A division by zero or the
        square root of a negative (noise) gives None for that cell.
    """
    aggregates = secure_aggregates(plan)
    if len(layouts) != len(aggregates):
        raise QueryError(f"the plan has {len(aggregates)} secure sums, but {len(layouts)} layouts were given")
    revealed: dict[Relation, list[Row]] = {}
    for index, (aggregate, layout) in enumerate(zip(aggregates, layouts, strict=True)):
        check_layout(aggregate, layout)
        total = totals.get(index)
        if total is None or np.shape(total) != (layout.length,):
            got = "none" if total is None else f"shape {np.shape(total)}"
            raise QueryError(f"secure sum {index} needs a total of length {layout.length}, got {got}")
        revealed[aggregate] = _revealed_rows(np.asarray(total, dtype=np.float64), layout, min_count)
    rows = _evaluate(plan.root, revealed)
    return [{k: None if v is WITHHELD else v for k, v in row.items()} for row in rows]


def withheld_groups(totals: Mapping[int, Vector], layouts: Sequence[DenseLayout], min_count: int) -> int:
    """How many groups of the secure sums :func:`finalise` withholds for ``min_count``."""
    withheld = 0
    for index, layout in enumerate(layouts):
        per_group = np.asarray(totals[index], dtype=np.float64).reshape(layout.groups, len(layout.specs))
        counts = [j for j, spec in enumerate(layout.specs) if spec.func is AggFunc.COUNT]
        if counts:
            withheld += int(np.count_nonzero(per_group[:, counts].max(axis=1) < min_count))
    return withheld


class _Withheld:
    """A cell withheld for its group's small row count: unknown, like NULL, but never skipped."""

    def __repr__(self) -> str:
        return "WITHHELD"


WITHHELD = _Withheld()


def _revealed_rows(total: Vector, layout: DenseLayout, min_count: int) -> list[Row]:
    width = len(layout.specs)
    counts = [j for j, spec in enumerate(layout.specs) if spec.func is AggFunc.COUNT]
    rows: list[Row] = []
    for g, labels in enumerate(layout.labels()):
        cells = total[g * width : (g + 1) * width]
        small = bool(counts) and float(cells[counts].max()) < min_count
        rows.append(
            {**labels, **{s.out: WITHHELD if small else float(cells[j]) for j, s in enumerate(layout.specs)}}
        )
    return rows


def _evaluate(relation: Relation, revealed: Mapping[Relation, list[Row]]) -> list[Row]:
    found = revealed.get(relation)
    if found is not None:
        return found
    match relation:
        case Collect(inner, _, _):
            return _evaluate(inner, revealed)
        case Project(inner, columns):
            return [{c: row[c] for c in columns} for row in _evaluate(inner, revealed)]
        case Filter(inner, predicate):
            return [row for row in _evaluate(inner, revealed) if _value(predicate, row) is True]
        case Compute(inner, name, expr):
            return [{**row, name: _value(expr, row)} for row in _evaluate(inner, revealed)]
        case Aggregate(inner, group_by, specs):
            return _aggregate(_evaluate(inner, revealed), group_by, specs)
        case Join(left, right, on):
            return _join(_evaluate(left, revealed), _evaluate(right, revealed), on)
    raise QueryError(
        f"{type(relation).__name__} below the secure sums runs at the parties, not at the receiver: "
        "finalise evaluates only what the plan places at the receiver"
    )


def _join(left: list[Row], right: list[Row], on: tuple[tuple[str, str], ...]) -> list[Row]:
    """Each left row with every right row whose keys equal its own (all of them for a cross join)."""
    by_key: dict[tuple[object, ...], list[Row]] = {}
    for row in right:
        by_key.setdefault(tuple(row[b] for _, b in on), []).append(row)
    joined: list[Row] = []
    for row in left:
        key = tuple(row[a] for a, _ in on)
        if None not in key:  # as in SQL, NULL matches nothing
            joined += [
                {**row, **{c: v for c, v in match.items() if c not in row}} for match in by_key.get(key, [])
            ]
    return joined


def _aggregate(rows: list[Row], group_by: tuple[str, ...], specs: tuple[AggregateSpec, ...]) -> list[Row]:
    groups: dict[tuple[object, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in group_by), []).append(row)
    if not group_by and not groups:
        groups[()] = []  # as in SQL: an aggregate without GROUP BY has one row
    return [
        {**dict(zip(group_by, key, strict=True)), **{s.out: _aggregate_value(s, members) for s in specs}}
        for key, members in groups.items()
    ]


_PYTHON_AGGREGATES: Mapping[AggFunc, Callable[[list[float]], object]] = {
    AggFunc.SUM: sum,
    AggFunc.SUM_SQUARES: lambda xs: sum(x * x for x in xs),
    AggFunc.MEAN: statistics.fmean,
    AggFunc.VAR: statistics.variance,
    AggFunc.STD: statistics.stdev,
    AggFunc.VAR_POP: statistics.pvariance,
    AggFunc.STD_POP: statistics.pstdev,
    AggFunc.MEDIAN: statistics.median,
    AggFunc.MIN: min,
    AggFunc.MAX: max,
}


def _aggregate_value(spec: AggregateSpec, rows: list[Row]) -> object:
    """One aggregate over revealed rows, skipping NULLs as SQL does; None where undefined."""
    if spec.column is None:
        return len(rows)
    if any(row[c] is WITHHELD for row in rows for c in (spec.column, spec.other) if c is not None):
        return WITHHELD  # skipping it as NULL would give a wrong total, not an unknown one
    values = [
        row[spec.column]
        for row in rows
        if row[spec.column] is not None and (spec.other is None or row[spec.other] is not None)
    ]
    if spec.func is AggFunc.COUNT:
        return len(values)
    if spec.func is AggFunc.COUNT_DISTINCT:
        return len(set(values))
    try:
        if spec.func in (AggFunc.CORR, AggFunc.SUM_PRODUCTS) and spec.other is not None:
            pairs = [(row[spec.column], row[spec.other]) for row in rows]
            xs = [_num(x) for x, y in pairs if x is not None and y is not None]
            ys = [_num(y) for x, y in pairs if x is not None and y is not None]
            if spec.func is AggFunc.CORR:
                return statistics.correlation(xs, ys)
            return sum(x * y for x, y in zip(xs, ys, strict=True)) if xs else None
        return _PYTHON_AGGREGATES[spec.func]([_num(v) for v in values]) if values else None
    except statistics.StatisticsError:
        return None  # too few values, or constant ones


def _value(expr: Expr, row: Row) -> object:
    """``expr`` over one revealed row with SQL's NULL semantics."""
    match expr:
        case ColumnRef(name):
            return row[name]
        case Literal(value):
            return value
        case BinaryOp(op, left, right):
            a, b = _value(left, row), _value(right, row)
            if a is WITHHELD or b is WITHHELD:
                return WITHHELD
            if a is None or b is None:
                return None
            x, y = _num(a), _num(b)
            if op == "/":
                return None if y == 0 else x / y
            return x + y if op == "+" else x - y if op == "-" else x * y
        case Sqrt(operand):
            inner = _value(operand, row)
            if inner is WITHHELD:
                return WITHHELD
            return None if inner is None or _num(inner) < 0 else math.sqrt(_num(inner))
        case Compare(op, left, right):
            a, b = _value(left, row), _value(right, row)
            if a is None or b is None or a is WITHHELD or b is WITHHELD:
                return None
            try:
                return bool(_PY_COMPARE[op](a, b))
            except TypeError:
                raise QueryError(
                    f"cannot compare {a!r} with {b!r} (a binned key holds its bin's label)"
                ) from None
        case BoolExpr(op, operands):
            values = [None if (v := _value(o, row)) is WITHHELD else v for o in operands]
            decisive = op is BoolOp.OR  # OR is true if one is true; AND false if one is false
            if decisive in values:
                return decisive
            return None if None in values else not decisive
        case Not(operand):
            inner = _value(operand, row)
            return None if inner is None or inner is WITHHELD else not inner


_PY_COMPARE: Mapping[CompareOp, Callable[[Any, Any], object]] = {
    CompareOp.EQ: operator.eq,
    CompareOp.NE: operator.ne,
    CompareOp.LT: operator.lt,
    CompareOp.LE: operator.le,
    CompareOp.GT: operator.gt,
    CompareOp.GE: operator.ge,
}


def _num(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    raise QueryError(f"arithmetic on {value!r}, which is not a number (a binned key holds its bin's label)")
