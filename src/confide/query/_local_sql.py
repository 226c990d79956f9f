"""Step 3 of a secure sum (see :mod:`._layout`): a party's part of it, as SQL in its source's dialect.

Where it sits: between the dense layout and the node. :func:`local_sql` turns the party's
subtree of a secure-sum aggregate (scan, filter, per-row compute, project: what push-down
put there) into one SELECT, written by sqlglot for the party's database (DuckDB over CSV
or Parquet, PostgreSQL, ...); the node runs it where the rows are, and
:func:`~confide.query._layout.dense_vector` places its rows into the vector the party adds.
Every value in the SQL is a literal sqlglot escapes, every name a quoted identifier; only
the node's own ``source`` text for a table is taken as written.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from confide._errors import QueryError
from confide.query._columns import parties_of
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
    BoolExpr,
    BoolOp,
    ColumnRef,
    ColumnType,
    Compare,
    CompareOp,
    Compute,
    Concat,
    Expr,
    Filter,
    Literal,
    Not,
    Project,
    Relation,
    Scan,
    Sqrt,
)
from confide.query._layout import OUTSIDE, DenseLayout, GroupKey, Label, check_layout, number_text

__all__ = ["local_rows_sql", "local_sql"]


def local_sql(
    aggregate: Aggregate, party: str, layout: DenseLayout, *, dialect: str, source: Callable[[str], str]
) -> str:
    """The SQL that computes ``party``'s part of a secure-sum ``aggregate``, in ``dialect``.

    Parameters
    ----------
    aggregate
        One of :func:`secure_aggregates`.
    party
        The party whose local subtree is generated.
    layout
        The aggregate's :class:`DenseLayout`.
    dialect
        A sqlglot dialect name: ``"duckdb"``, ``"postgres"``, ...
    source
        SQL text (trusted, written by the node) that reads a table where the party holds it:
        ``read_csv_auto('/data/employees.csv')``, or a quoted table name.

    Returns
    -------
    str
        One SELECT. Its rows are, per non-empty bucket combination: a bucket index per key
        (``-1`` for a value outside a domain without ``other``), one value per spec, then per key
        an offending value as text (NULL where none, or where it is NULL): what
        :func:`dense_vector` reads.
    """
    check_layout(aggregate, layout)
    try:
        sqlglot.Dialect.get_or_raise(dialect)
    except ValueError as error:
        raise QueryError(f"unknown SQL dialect {dialect!r}: {error}") from None
    aliases = (f"__r{n}" for n in itertools.count())
    rows = _party_rows(aggregate, party, source, aliases)
    buckets = [_quoted(f"__bucket_{i}") for i in range(len(layout.keys))]
    if any(not key.bins for key in layout.keys):
        select = _grouped_by_value(layout, rows, buckets, aliases)
    else:
        select = _grouped_by_bucket(layout, rows, buckets, aliases)
    try:
        return select.sql(dialect=dialect)
    except SqlglotError as error:
        raise QueryError(f"cannot write the local query in {dialect}: {error}") from None


def local_rows_sql(
    aggregate: Aggregate,
    party: str,
    layout: DenseLayout,
    *,
    dialect: str,
    source: Callable[[str], str],
    row: str = "__row",
) -> str:
    """The SQL that lists ``party``'s rows of a secure-sum ``aggregate``: each row's ``row`` and group.

    Every ``source`` must yield a column ``row`` (the node's key of each row) beside the
    table's own; it is kept through every projection. The SELECT's rows are: the key, then
    a bucket index per GROUP BY key (as :func:`local_sql` numbers them). The node reads it
    to learn which of its rows each cell of the release comes from (its differencing check).
    """
    check_layout(aggregate, layout)
    aliases = (f"__r{n}" for n in itertools.count())
    rows = _party_rows(aggregate, party, source, aliases, keep=(row,))
    buckets = [exp.alias_(_bucket(k), f"__bucket_{i}", quoted=True) for i, k in enumerate(layout.keys)]
    select = exp.select(_quoted(row), *buckets).from_(rows)
    try:
        return select.sql(dialect=dialect)
    except SqlglotError as error:
        raise QueryError(f"cannot write the local query in {dialect}: {error}") from None


def _grouped_by_bucket(
    layout: DenseLayout, rows: exp.Expr, buckets: list[exp.Column], aliases: Iterator[str]
) -> exp.Select:
    """Map every row to its buckets, then group by them: for keys that are all binned (or none)."""
    keyed = exp.select(
        exp.Star(),
        *(exp.alias_(_bucket(k), b.name, quoted=True) for k, b in zip(layout.keys, buckets, strict=True)),
    ).from_(rows)
    offending = [
        exp.Min(this=exp.Case().when(_eq(b, _literal(OUTSIDE)), exp.cast(_quoted(key.name), "text")))
        for key, b in zip(layout.keys, buckets, strict=True)
    ]
    select = exp.select(
        *buckets,
        *(exp.alias_(_spec(spec, _clips(layout)), spec.out, quoted=True) for spec in layout.specs),
        *(exp.alias_(o, f"__offending_{i}", quoted=True) for i, o in enumerate(offending)),
    ).from_(_subquery(keyed, next(aliases)))
    return select.group_by(*buckets) if buckets else select


def _grouped_by_value(
    layout: DenseLayout, rows: exp.Expr, buckets: list[exp.Column], aliases: Iterator[str]
) -> exp.Select:
    """Group by the categorical keys' own values first, then map the few groups to buckets.

    Mapping every row's value to its bucket (a CASE per row) costs more than the
    aggregation itself; the database groups by the raw value far faster, and the CASE
    then runs once per distinct value. A key with bins is still bucketed per row (its raw
    values may be all distinct). Every spec of a secure sum adds up, so the second level
    sums the first level's partial sums.
    """
    values = [_quoted(f"__value_{i}") for i in range(len(layout.keys))]
    first_keys = [
        exp.alias_(_bucket(k) if k.bins else _quoted(k.name), v.name, quoted=True)
        for k, v in zip(layout.keys, values, strict=True)
    ]
    keyed = exp.select(exp.Star(), *first_keys).from_(rows)
    offending_bins = [
        exp.alias_(
            exp.Min(this=exp.Case().when(_eq(v, _literal(OUTSIDE)), exp.cast(_quoted(k.name), "text"))),
            f"__binned_offending_{i}",
            quoted=True,
        )
        for i, (k, v) in enumerate(zip(layout.keys, values, strict=True))
        if k.bins
    ]
    partial = (
        exp.select(
            *values,
            *(exp.alias_(_spec(spec, _clips(layout)), spec.out, quoted=True) for spec in layout.specs),
            *offending_bins,
        )
        .from_(_subquery(keyed, next(aliases)))
        .group_by(*values)
    )
    bucketed = exp.select(
        exp.Star(),
        *(
            exp.alias_(v if k.bins else _bucket(k, v), b.name, quoted=True)
            for k, v, b in zip(layout.keys, values, buckets, strict=True)
        ),
    ).from_(_subquery(partial, next(aliases)))
    offending = [
        exp.Min(this=_quoted(f"__binned_offending_{i}"))
        if k.bins
        else exp.Min(this=exp.Case().when(_eq(b, _literal(OUTSIDE)), exp.cast(v, "text")))
        for i, (k, v, b) in enumerate(zip(layout.keys, values, buckets, strict=True))
    ]
    return (
        exp.select(
            *buckets,
            *(exp.alias_(exp.Sum(this=_quoted(spec.out)), spec.out, quoted=True) for spec in layout.specs),
            *(exp.alias_(o, f"__offending_{i}", quoted=True) for i, o in enumerate(offending)),
        )
        .from_(_subquery(bucketed, next(aliases)))
        .group_by(*buckets)
    )


def _party_rows(
    aggregate: Aggregate,
    party: str,
    source: Callable[[str], str],
    aliases: Iterator[str],
    keep: tuple[str, ...] = (),
) -> exp.Expr:
    """The FROM item over ``party``'s input rows: its subtrees of the aggregate's input (``keep`` kept)."""
    inputs = aggregate.input.inputs if isinstance(aggregate.input, Concat) else (aggregate.input,)
    mine = [r for r in inputs if parties_of(r) == {party}]
    if not mine:
        holders = ", ".join(sorted(parties_of(aggregate.input)))
        raise QueryError(f"{party!r} holds no input of this secure sum; its parties are: {holders}")
    if len(mine) == 1:
        return _rows(mine[0], source, aliases, keep)
    selects = [exp.select(exp.Star()).from_(_rows(r, source, aliases, keep)) for r in mine]
    union: exp.Query = selects[0]
    for select in selects[1:]:
        union = exp.union(union, select, distinct=False)
    return _subquery(union, next(aliases))


def _rows(
    relation: Relation, source: Callable[[str], str], names: Iterator[str], keep: tuple[str, ...] = ()
) -> exp.Expr:
    """A FROM item (a table or an aliased subquery) that yields ``relation``'s rows (``keep`` kept)."""
    match relation:
        case Scan(table, _):
            # ``source`` is the node's own SQL for its table (a file reader or a table name).
            return exp.alias_(
                exp.Table(this=exp.Var(this=source(table))), next(names), table=True, quoted=True
            )
        case Filter(inner, predicate):
            select = (
                exp.select(exp.Star()).from_(_rows(inner, source, names, keep)).where(_sql_expr(predicate))
            )
        case Compute(inner, name, expr):
            computed = exp.alias_(_sql_expr(expr), name, quoted=True)
            select = exp.select(exp.Star(), computed).from_(_rows(inner, source, names, keep))
        case Project(inner, columns):
            kept = [*columns, *(k for k in keep if k not in columns)]
            select = exp.select(*map(_quoted, kept)).from_(_rows(inner, source, names, keep))
        case _:
            raise QueryError(
                f"{type(relation).__name__} in a party's local part of a secure sum is not supported "
                "by the SQL generator; supported: scan, filter, compute, project"
            )
    return _subquery(select, next(names))


def _bucket(key: GroupKey, column: exp.Expr | None = None) -> exp.Expr:
    """CASE mapping a key's value (``column``, default its own) to 0..k-1, then ``other`` or -1."""
    column = column if column is not None else _quoted(key.name)
    outside = _literal(key.size - 1 if key.other else OUTSIDE)
    case = exp.Case()
    if key.bins:
        case = case.when(exp.LT(this=column, expression=_literal(key.bins[0])), outside)
        for index, edge in enumerate(key.bins[1:]):
            case = case.when(exp.LT(this=column, expression=_literal(edge)), _literal(index))
    else:
        for index, category in enumerate(key.categories):
            case = case.when(_eq(column, _category(key, category)), _literal(index))
    return case.else_(outside)  # NULL and NaN fail every WHEN: they land here


def _category(key: GroupKey, category: Label) -> exp.Expr:
    if key.type is ColumnType.STR:
        return _literal(str(category))
    if key.type is ColumnType.BOOL and isinstance(category, str) and category.lower() in ("true", "false"):
        return _literal(category.lower() == "true")
    try:
        return _literal(int(category) if key.type is ColumnType.INT else float(category))
    except ValueError:
        raise QueryError(
            f"GROUP BY {key.name}: category {category!r} is not a {key.type.value}; fix the schema"
        ) from None


def _spec(spec: AggregateSpec, clips: Mapping[str, tuple[float, float]]) -> exp.Expr:
    column: exp.Expr | None = None if spec.column is None else _clipped(spec.column, clips)
    if column is not None and spec.other is not None and spec.func is not AggFunc.SUM_PRODUCTS:
        # Only the rows where the other column is present too (CORR's complete pairs).
        present = exp.Not(this=exp.Is(this=_quoted(spec.other), expression=exp.Null()))
        column = exp.Case().when(present, column)
    if spec.func is AggFunc.COUNT:
        return exp.Count(this=exp.Star() if column is None else column)
    if spec.func is AggFunc.SUM and column is not None:
        return exp.Sum(this=column)
    if spec.func is AggFunc.SUM_SQUARES and column is not None:
        return exp.Sum(this=exp.Mul(this=_double(column), expression=_double(column)))
    if spec.func is AggFunc.SUM_PRODUCTS and column is not None and spec.other is not None:
        # Doubles: a product of two 32-bit integers overflows an integer in PostgreSQL.
        return exp.Sum(this=exp.Mul(this=_double(column), expression=_double(_clipped(spec.other, clips))))
    raise QueryError(
        f"{spec.func.value}({spec.column}) is not a secure sum; compile the query with compile_plan"
    )


_SQL_COMPARE: Mapping[CompareOp, type[exp.Binary]] = {
    CompareOp.EQ: exp.EQ,
    CompareOp.NE: exp.NEQ,
    CompareOp.LT: exp.LT,
    CompareOp.LE: exp.LTE,
    CompareOp.GT: exp.GT,
    CompareOp.GE: exp.GTE,
}
_SQL_ARITHMETIC: Mapping[str, type[exp.Binary]] = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul}


def _clips(layout: DenseLayout) -> dict[str, tuple[float, float]]:
    return {column: (lo, hi) for column, lo, hi in layout.clips}


def _clipped(name: str, clips: Mapping[str, tuple[float, float]]) -> exp.Expr:
    """Column ``name`` clipped into its declared bounds (NULL stays NULL); as is where it has none.

    A value outside is counted at the nearer bound rather than refused: a refusal, asked
    with a WHERE on one patient, would say whether that patient's value lies outside.
    """
    column = _quoted(name)
    if name not in clips:
        return column
    lo, hi = clips[name]
    return (
        exp.Case()
        .when(exp.LT(this=column, expression=_literal(lo)), _literal(lo))
        .when(exp.GT(this=column.copy(), expression=_literal(hi)), _literal(hi))
        .else_(column.copy())
    )


def _sql_expr(expr: Expr) -> exp.Expr:
    """``expr`` as SQL, parenthesised as the tree says; ``/`` is true division, NULL on zero."""
    match expr:
        case ColumnRef(name):
            return _quoted(name)
        case Literal(value):
            return _literal(value)
        case BinaryOp("/", left, right):
            divisor = exp.Nullif(this=_sql_expr(right), expression=_literal(0))
            return exp.Paren(this=exp.Div(this=_double(_sql_expr(left)), expression=divisor))
        case BinaryOp(op, left, right):
            return exp.Paren(this=_SQL_ARITHMETIC[op](this=_sql_expr(left), expression=_sql_expr(right)))
        case Compare(op, left, right):
            return exp.Paren(this=_SQL_COMPARE[op](this=_sql_expr(left), expression=_sql_expr(right)))
        case BoolExpr(op, operands):
            join = exp.and_ if op is BoolOp.AND else exp.or_
            return exp.Paren(this=join(*map(_sql_expr, operands)))
        case Not(operand):
            return exp.Not(this=exp.Paren(this=_sql_expr(operand)))
        case Sqrt(operand):
            inner = _sql_expr(operand)  # PostgreSQL raises on a negative: NULL, as at the receiver
            guarded = exp.Case().when(exp.GTE(this=inner, expression=_literal(0)), inner.copy())
            return exp.Sqrt(this=guarded)


def _literal(value: int | float | str | bool | None) -> exp.Expr:
    """A SQL literal; sqlglot escapes strings for the dialect."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise QueryError(f"the number {value!r} cannot be written in SQL; use a finite number")
    number = exp.Literal.number(number_text(abs(value)))
    return exp.Paren(this=exp.Neg(this=number)) if value < 0 else number


def _quoted(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _double(expression: exp.Expr) -> exp.Expr:
    return exp.cast(expression, "double")


def _eq(left: exp.Expr, right: exp.Expr) -> exp.Expr:
    return exp.EQ(this=left, expression=right)


def _subquery(query: exp.Query, alias: str) -> exp.Expr:
    return exp.alias_(exp.Subquery(this=query), alias, table=True, quoted=True)
