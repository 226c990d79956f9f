"""Expressions in the SQL front end: sqlglot expressions to IR expressions, and the aggregates among them.

Where it sits: called by :mod:`._sql` for WHERE, the select list and HAVING, with a
:class:`Context` saying which clause it reads and the :class:`~._sql_from.Scope` its names
are looked up in. ``IN`` and ``BETWEEN`` become comparisons joined by OR / AND; ``-x`` is
``0 - x``. In the select list and HAVING an aggregate call becomes an
:class:`~confide.query._ir.AggregateSpec` collected by :class:`Aggregates` (and a column
reference to its output); an aggregate over a per-row expression (``SUM(x * 12)``) gets
an internal ``__argN`` column computed below the aggregate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlglot import exp

from confide._errors import QueryError
from confide.query._ir import (
    AggFunc,
    AggregateSpec,
    BinaryOp,
    BoolExpr,
    BoolOp,
    ColumnRef,
    Compare,
    CompareOp,
    Expr,
    Literal,
    Not,
)
from confide.query._sql_from import Scope
from confide.query._sql_nodes import at, operands, snippet, used

__all__ = ["Aggregates", "Context", "to_expr"]

_EXPRESSIONS = (
    "supported: columns, numbers, strings, TRUE/FALSE/NULL, + - * /, = != <> < <= > >=, "
    "AND/OR/NOT, IN (...), BETWEEN ... AND ..."
)
_ARITHMETIC: Mapping[type[exp.Expr], str] = MappingProxyType(
    {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}
)
_COMPARISONS: Mapping[type[exp.Expr], CompareOp] = MappingProxyType(
    {
        exp.EQ: CompareOp.EQ,
        exp.NEQ: CompareOp.NE,
        exp.LT: CompareOp.LT,
        exp.LTE: CompareOp.LE,
        exp.GT: CompareOp.GT,
        exp.GTE: CompareOp.GE,
    }
)
_NAMES: Mapping[type[exp.Expr], str] = MappingProxyType(
    {
        exp.Like: "LIKE",
        exp.ILike: "ILIKE",
        exp.Is: "IS [NOT] NULL (the IR has no test for missing values)",
        exp.Case: "CASE",
        exp.Cast: "CAST",
        exp.Mod: "% (modulo)",
        exp.DPipe: "|| (string concatenation)",
        exp.Star: "*",
    }
)


@dataclass(frozen=True)
class Context:
    """Where an expression stands: its scope, its clause (for messages), and whether aggregates may appear."""

    scope: Scope
    clause: str
    aggregates: Aggregates | None = None

    def column(self, node: exp.Column) -> ColumnRef:
        _, name = self.scope.lookup(node)
        if self.aggregates is not None and name not in self.aggregates.group_by:
            raise QueryError(
                f"column {name!r}{at(node)} in {self.clause} is neither in GROUP BY nor inside an "
                f"aggregate: group by it, or aggregate it (e.g. AVG({name}))"
            )
        return ColumnRef(name)

    def aggregate(self, node: exp.Expr) -> ColumnRef:
        if self.aggregates is None:
            hint = "; filter groups with HAVING" if self.clause == "WHERE" else ""
            raise QueryError(f"aggregate {snippet(node)}{at(node)} is not allowed in {self.clause}{hint}")
        return ColumnRef(self.aggregates.reference(node))


def to_expr(node: exp.Expr, ctx: Context) -> Expr:
    """``node`` as an IR expression; :class:`QueryError` names SQL the IR cannot express."""
    match node:
        case exp.Paren():
            return to_expr(node.this, ctx)
        case exp.Column() if not isinstance(node.this, exp.Star):
            return ctx.column(node)
        case exp.Literal() | exp.Boolean() | exp.Null():
            return Literal(_value(node))
        case exp.Neg():
            inner = to_expr(node.this, ctx)
            number = inner.value if isinstance(inner, Literal) else None
            if isinstance(number, int | float) and not isinstance(number, bool):
                return Literal(-number)
            return BinaryOp("-", Literal(0), inner)
        case exp.And() | exp.Or():
            op = BoolOp.AND if isinstance(node, exp.And) else BoolOp.OR
            return BoolExpr(op, tuple(to_expr(n, ctx) for n in operands(node, type(node))))
        case exp.Not():
            return Not(to_expr(node.this, ctx))
        case exp.In() if not node.args.get("query") and not node.args.get("unnest") and node.expressions:
            left = to_expr(node.this, ctx)
            equal = tuple(Compare(CompareOp.EQ, left, to_expr(n, ctx)) for n in node.expressions)
            return equal[0] if len(equal) == 1 else BoolExpr(BoolOp.OR, equal)
        case exp.Between() if not node.args.get("symmetric"):
            value = to_expr(node.this, ctx)
            low, high = to_expr(node.args["low"], ctx), to_expr(node.args["high"], ctx)
            return BoolExpr(
                BoolOp.AND, (Compare(CompareOp.GE, value, low), Compare(CompareOp.LE, value, high))
            )
        case exp.AggFunc() | exp.WithinGroup():
            return ctx.aggregate(node)
    if type(node) in _ARITHMETIC:
        return BinaryOp(_ARITHMETIC[type(node)], to_expr(node.this, ctx), to_expr(node.expression, ctx))
    if type(node) in _COMPARISONS:
        return Compare(_COMPARISONS[type(node)], to_expr(node.this, ctx), to_expr(node.expression, ctx))
    what = _NAMES.get(type(node)) or (
        f"function {node.name.upper() if isinstance(node, exp.Anonymous) else node.sql_name()}()"
        if isinstance(node, exp.Func)
        else node.key.upper()
    )
    raise QueryError(f"{what} is not supported in {ctx.clause} ({snippet(node)}{at(node)}); {_EXPRESSIONS}")


def _value(node: exp.Expr) -> int | float | str | bool | None:
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if node.is_string:
        return str(node.this)
    try:
        return int(node.this)
    except ValueError:
        pass
    try:
        return float(node.this)
    except ValueError:
        raise QueryError(f"number {node.this!r}{at(node)} is not supported; {_EXPRESSIONS}") from None


# -- aggregates -------------------------------------------------------------------------

_AGGREGATES_SUPPORTED = (
    "supported: COUNT(*), COUNT(x), COUNT(DISTINCT x), SUM, AVG, VARIANCE/VAR_SAMP, VAR_POP, "
    "STDDEV/STDDEV_SAMP, STDDEV_POP, CORR(x, y), MEDIAN, PERCENTILE_CONT(0.5), MIN, MAX"
)
# sqlglot's class -> the IR's function and the name an unaliased output gets (``avg_salary``).
_FUNCTIONS: Mapping[type[exp.Expr], tuple[AggFunc, str]] = MappingProxyType(
    {
        exp.Sum: (AggFunc.SUM, "sum"),
        exp.Avg: (AggFunc.MEAN, "avg"),
        exp.Variance: (AggFunc.VAR, "variance"),  # also VAR_SAMP
        exp.VariancePop: (AggFunc.VAR_POP, "var_pop"),
        exp.Stddev: (AggFunc.STD, "stddev"),
        exp.StddevSamp: (AggFunc.STD, "stddev_samp"),
        exp.StddevPop: (AggFunc.STD_POP, "stddev_pop"),
        exp.Corr: (AggFunc.CORR, "corr"),
        exp.Median: (AggFunc.MEDIAN, "median"),
        exp.Min: (AggFunc.MIN, "min"),
        exp.Max: (AggFunc.MAX, "max"),
    }
)


@dataclass
class Aggregates:
    """The aggregates a query needs, collected while its SELECT list and HAVING are read."""

    scope: Scope
    group_by: tuple[str, ...]
    specs: list[AggregateSpec] = field(default_factory=list)
    arguments: dict[Expr, str] = field(default_factory=dict)  # per-row Computes aggregated over

    def output(self, node: exp.Expr, alias: str | None) -> str:
        """A select-list aggregate: its own spec, named by the alias or ``avg_salary``."""
        func, column, other, default = self._parts(node)
        self.specs.append(AggregateSpec(func, column, alias or default, other))
        return alias or default

    def reference(self, node: exp.Expr) -> str:
        """An aggregate inside an expression: an existing equal spec, or an internal one."""
        func, column, other, _ = self._parts(node)
        for spec in self.specs:
            if (spec.func, spec.column, spec.other) == (func, column, other):
                return spec.out
        # The name rewrite_aggregates gives the sums it needs: one name, one spec.
        name = f"__{func.value}_{column or 'rows'}" + (f"_{other}" if other else "")
        self.specs.append(AggregateSpec(func, column, name, other))
        return name

    def _parts(self, node: exp.Expr) -> tuple[AggFunc, str | None, str | None, str]:
        func, base, args = _call(node)
        ctx = Context(self.scope, f"the argument of {snippet(node)}")
        columns = [None if a is None else self._argument(to_expr(a, ctx)) for a in args]
        plain = [c for c in columns if c is not None and not c.startswith("__")]
        default = "_".join((base, *plain)) if len(plain) == len(args) - columns.count(None) else base
        return func, columns[0], columns[1] if len(columns) > 1 else None, default

    def _argument(self, expr: Expr) -> str:
        if isinstance(expr, ColumnRef):
            return expr.name
        return self.arguments.setdefault(expr, f"__arg{len(self.arguments) + 1}")


def _call(node: exp.Expr) -> tuple[AggFunc, str, list[exp.Expr | None]]:
    """The function, its default output name, and its arguments (None for COUNT's ``*``)."""
    if isinstance(node, exp.WithinGroup):  # PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY x)
        order = node.expression
        keys = order.expressions if isinstance(order, exp.Order) else []
        if isinstance(node.this, exp.PercentileCont) and len(keys) == 1 and not keys[0].args.get("desc"):
            _median(node.this.this, node)
            return AggFunc.MEDIAN, "median", [keys[0].this]
    elif isinstance(node, exp.PercentileCont) and node.expression is not None:  # PERCENTILE_CONT(x, 0.5)
        _median(node.expression, node)
        return AggFunc.MEDIAN, "median", [node.this]
    elif isinstance(node, exp.Count) and node.this is not None and used(node) <= {"this", "big_int"}:
        arg = node.this
        if isinstance(arg, exp.Star) or (isinstance(arg, exp.Literal) and not arg.is_string):
            return AggFunc.COUNT, "count", [None]  # COUNT(1) counts rows too
        if not isinstance(arg, exp.Distinct):
            return AggFunc.COUNT, "count", [arg]
        if len(arg.expressions) == 1 and used(arg) == {"expressions"}:
            return AggFunc.COUNT_DISTINCT, "count_distinct", [arg.expressions[0]]
    elif type(node) in _FUNCTIONS and not isinstance(node.this, exp.Distinct):
        func, base = _FUNCTIONS[type(node)]
        allowed = {"this", "expression"} if func is AggFunc.CORR else {"this"}
        args = [node.this, node.expression] if func is AggFunc.CORR else [node.this]
        if all(a is not None for a in args) and used(node) <= allowed:
            return func, base, args
    raise QueryError(f"aggregate {snippet(node)}{at(node)} is not supported; {_AGGREGATES_SUPPORTED}")


def _median(fraction: exp.Expr, node: exp.Expr) -> None:
    if not (isinstance(fraction, exp.Literal) and not fraction.is_string and float(fraction.this) == 0.5):
        raise QueryError(
            f"{snippet(node)}{at(node)}: only PERCENTILE_CONT(0.5), the median, is supported; "
            "stats.histogram gives approximate quantiles"
        )
