"""Code generation: a plan's secure sums as local SQL per party, and the receiver's finalisation.

Where it sits: after :mod:`.passes` (a placed :class:`Plan`), around the secure-sum protocol,
which only adds vectors. Every Aggregate placed as a secure sum has a ``Concat`` input with
one local subtree per party (push-down put the row-level work there). For it:

1. :func:`secure_aggregates` lists those aggregates, in plan order (index ``i`` below);
2. :meth:`DenseLayout.for_aggregate` fixes the vector's shape from the declared GROUP BY
   domains, so every party sends the same length and none learns which keys another holds,
   and the per-element bounds the fixed-point encoder needs;
3. each party runs :func:`local_sql` where its data is (DuckDB over files, PostgreSQL, ...):
   one row per non-empty bucket, which :func:`dense_vector` places into the vector
   (:func:`run_local_duckdb` does both for CSV and Parquet files);
4. the protocol adds the parties' vectors (not here);
5. the receiver runs :func:`finalise` over the totals: the plan's operators above the secure
   sums (means, variances, ratios, HAVING, projections) in plain Python.
"""

from __future__ import annotations

import itertools
import math
import operator
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from confide._errors import QueryError
from confide.query._columns import ColumnInfo, output_columns, parties_of
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
    BoolExpr,
    BoolOp,
    Collect,
    ColumnRef,
    ColumnType,
    Compare,
    CompareOp,
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
from confide.query._schema import FederationSchema
from confide.query.passes.place import SUMMABLE, Placement, Plan

__all__ = [
    "DenseLayout",
    "GroupKey",
    "dense_vector",
    "finalise",
    "local_sql",
    "run_local_duckdb",
    "secure_aggregates",
    "withheld_groups",
]

Label = str | int
Row = dict[str, object]
Vector = npt.NDArray[np.float64]

OTHER = "other"  # the label of a key's bucket for values outside its declared domain
_OUTSIDE = -1  # the bucket of a value outside the domain of a key without ``other``


# -- layout -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupKey:
    """A GROUP BY key and its declared domain: categories or bin edges, and maybe ``other``."""

    name: str
    type: ColumnType
    categories: tuple[Label, ...] = ()
    bins: tuple[float, ...] = ()
    other: bool = False

    @property
    def labels(self) -> tuple[Label, ...]:
        """One label per bucket: the categories, or bins as ``[30, 40)``; then ``other``."""
        inner = self.categories
        if self.bins:
            inner = tuple(f"[{_number(lo)}, {_number(hi)})" for lo, hi in itertools.pairwise(self.bins))
        return (*inner, OTHER) if self.other else inner

    @property
    def size(self) -> int:
        """The number of buckets."""
        return len(self.labels)

    def describe(self) -> str:
        """The declared domain, for error messages."""
        if self.bins:
            return f"bins [{_number(self.bins[0])}, {_number(self.bins[-1])})"
        return "categories " + ", ".join(map(str, self.categories))


@dataclass(frozen=True)
class DenseLayout:
    """The shape of one secure sum's vector: groups (first key slowest) times aggregate specs.

    Element ``g * len(specs) + j`` holds spec ``j`` of group ``g``. ``spec_bounds[j]`` bounds
    the magnitude of spec ``j`` of any group summed over at most ``max_rows`` rows.
    """

    keys: tuple[GroupKey, ...]
    specs: tuple[AggregateSpec, ...]
    spec_bounds: tuple[float, ...]
    max_rows: int

    @classmethod
    def for_aggregate(cls, aggregate: Aggregate, schema: FederationSchema, *, max_rows: int) -> DenseLayout:
        """The layout of ``aggregate``; ``max_rows`` bounds the rows any group adds up (all parties)."""
        if max_rows < 1:
            raise QueryError(f"max_rows must be at least 1, not {max_rows}")
        columns = output_columns(aggregate.input, schema)
        keys = tuple(_group_key(name, columns[name]) for name in aggregate.group_by)
        bounds = tuple(_spec_bound(spec, columns, max_rows) for spec in aggregate.aggregates)
        return cls(keys, aggregate.aggregates, bounds, max_rows)

    @property
    def groups(self) -> int:
        """The number of groups: the product of the keys' domain sizes (1 without GROUP BY)."""
        return math.prod(key.size for key in self.keys)

    @property
    def length(self) -> int:
        """The vector's length."""
        return self.groups * len(self.specs)

    @property
    def bounds(self) -> Vector:
        """The magnitude bound of every element, for the fixed-point encoder."""
        return np.tile(np.asarray(self.spec_bounds, dtype=np.float64), self.groups)

    def labels(self) -> list[dict[str, Label]]:
        """Each group's key labels, in vector order."""
        names = [key.name for key in self.keys]
        return [
            dict(zip(names, group, strict=True))
            for group in itertools.product(*(k.labels for k in self.keys))
        ]


def secure_aggregates(plan: Plan) -> list[Aggregate]:
    """The aggregates of ``plan`` computed by secure sums, inputs first; a total's index is its place here.

    Equal aggregates are one secure sum: a ``WITH`` query the plan reads twice is summed once.
    """
    found: dict[Aggregate, Aggregate] = {}
    for step in plan.steps:
        relation = step.relation
        secure = step.placement is Placement.SECURE_SUM
        if secure and isinstance(relation, Aggregate) and isinstance(relation.input, Concat):
            found.setdefault(relation, relation)
    return list(found.values())


def _group_key(name: str, column: ColumnInfo) -> GroupKey:
    domain = column.domain
    if domain is None:
        raise QueryError(f"GROUP BY {name}: {name!r} has no declared categories or bins; declare its domain")
    return GroupKey(name, column.type, domain.categories or (), domain.bins or (), domain.other)


def _spec_bound(spec: AggregateSpec, columns: Mapping[str, ColumnInfo], max_rows: int) -> float:
    if spec.func not in SUMMABLE:
        raise QueryError(
            f"{spec.func.value}({spec.column}) is not a sum; compile the query with compile_plan"
        )
    if spec.func is AggFunc.COUNT:
        return float(max_rows)
    x = _magnitude(spec, spec.column, columns)
    if spec.func is AggFunc.SUM:
        return max_rows * x
    if spec.func is AggFunc.SUM_SQUARES:
        return max_rows * x * x
    return max_rows * x * _magnitude(spec, spec.other, columns)  # max |x*y| = max|x| * max|y|


def _magnitude(spec: AggregateSpec, column: str | None, columns: Mapping[str, ColumnInfo]) -> float:
    bounds = None if column is None else columns[column].bounds
    if bounds is None:
        raise QueryError(
            f"{spec.func.value}({column}) is a secure sum, which needs declared bounds for {column!r}: "
            "add bounds: [lo, hi] to its column in the federation schema"
        )
    return max(abs(bounds[0]), abs(bounds[1]))


def _check_layout(aggregate: Aggregate, layout: DenseLayout) -> None:
    if tuple(k.name for k in layout.keys) != aggregate.group_by or layout.specs != aggregate.aggregates:
        raise QueryError("the dense layout was built for another aggregate; build it with for_aggregate")


# -- local SQL --------------------------------------------------------------------------


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
    _check_layout(aggregate, layout)
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
        keyed = exp.select(
            exp.Star(),
            *(exp.alias_(_bucket(k), b.name, quoted=True) for k, b in zip(layout.keys, buckets, strict=True)),
        ).from_(rows)
        offending = [
            exp.Min(this=exp.Case().when(_eq(b, _literal(_OUTSIDE)), exp.cast(_quoted(key.name), "text")))
            for key, b in zip(layout.keys, buckets, strict=True)
        ]
        select = exp.select(
            *buckets,
            *(exp.alias_(_spec(spec), spec.out, quoted=True) for spec in layout.specs),
            *(exp.alias_(o, f"__offending_{i}", quoted=True) for i, o in enumerate(offending)),
        ).from_(_subquery(keyed, next(aliases)))
        if buckets:
            select = select.group_by(*buckets)
    try:
        return select.sql(dialect=dialect)
    except SqlglotError as error:
        raise QueryError(f"cannot write the local query in {dialect}: {error}") from None


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
            exp.Min(this=exp.Case().when(_eq(v, _literal(_OUTSIDE)), exp.cast(_quoted(k.name), "text"))),
            f"__binned_offending_{i}",
            quoted=True,
        )
        for i, (k, v) in enumerate(zip(layout.keys, values, strict=True))
        if k.bins
    ]
    partial = (
        exp.select(
            *values,
            *(exp.alias_(_spec(spec), spec.out, quoted=True) for spec in layout.specs),
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
        else exp.Min(this=exp.Case().when(_eq(b, _literal(_OUTSIDE)), exp.cast(v, "text")))
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
    aggregate: Aggregate, party: str, source: Callable[[str], str], aliases: Iterator[str]
) -> exp.Expr:
    """The FROM item over ``party``'s input rows: its subtrees of the aggregate's input."""
    inputs = aggregate.input.inputs if isinstance(aggregate.input, Concat) else (aggregate.input,)
    mine = [r for r in inputs if parties_of(r) == {party}]
    if not mine:
        holders = ", ".join(sorted(parties_of(aggregate.input)))
        raise QueryError(f"{party!r} holds no input of this secure sum; its parties are: {holders}")
    if len(mine) == 1:
        return _rows(mine[0], source, aliases)
    selects = [exp.select(exp.Star()).from_(_rows(r, source, aliases)) for r in mine]
    union: exp.Query = selects[0]
    for select in selects[1:]:
        union = exp.union(union, select, distinct=False)
    return _subquery(union, next(aliases))


def _rows(relation: Relation, source: Callable[[str], str], names: Iterator[str]) -> exp.Expr:
    """A FROM item (a table or an aliased subquery) that yields ``relation``'s rows."""
    match relation:
        case Scan(table, _):
            # ``source`` is the node's own SQL for its table (a file reader or a table name).
            return exp.alias_(
                exp.Table(this=exp.Var(this=source(table))), next(names), table=True, quoted=True
            )
        case Filter(inner, predicate):
            select = exp.select(exp.Star()).from_(_rows(inner, source, names)).where(_sql_expr(predicate))
        case Compute(inner, name, expr):
            computed = exp.alias_(_sql_expr(expr), name, quoted=True)
            select = exp.select(exp.Star(), computed).from_(_rows(inner, source, names))
        case Project(inner, columns):
            select = exp.select(*map(_quoted, columns)).from_(_rows(inner, source, names))
        case _:
            raise QueryError(
                f"{type(relation).__name__} in a party's local part of a secure sum is not supported "
                "by the SQL generator; supported: scan, filter, compute, project"
            )
    return _subquery(select, next(names))


def _bucket(key: GroupKey, column: exp.Expr | None = None) -> exp.Expr:
    """CASE mapping a key's value (``column``, default its own) to 0..k-1, then ``other`` or -1."""
    column = column if column is not None else _quoted(key.name)
    outside = _literal(key.size - 1 if key.other else _OUTSIDE)
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


def _spec(spec: AggregateSpec) -> exp.Expr:
    column: exp.Expr | None = None if spec.column is None else _quoted(spec.column)
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
        return exp.Sum(this=exp.Mul(this=_double(column), expression=_double(_quoted(spec.other))))
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
    number = exp.Literal.number(_number(abs(value)))
    return exp.Paren(this=exp.Neg(this=number)) if value < 0 else number


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _quoted(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _double(expression: exp.Expr) -> exp.Expr:
    return exp.cast(expression, "double")


def _eq(left: exp.Expr, right: exp.Expr) -> exp.Expr:
    return exp.EQ(this=left, expression=right)


def _subquery(query: exp.Query, alias: str) -> exp.Expr:
    return exp.alias_(exp.Subquery(this=query), alias, table=True, quoted=True)


# -- dense vectors ----------------------------------------------------------------------


def dense_vector(rows: Iterable[Sequence[object]], layout: DenseLayout) -> Vector:
    """Place :func:`local_sql`'s result rows into the layout's vector; empty groups are zeros.

    Raises
    ------
    QueryError
        A value outside a key's declared domain (naming the key and the value), a row that
        does not match the layout, or a sum that is not finite or exceeds the layout's bounds.
    """
    keys, width = layout.keys, len(layout.specs)
    vector = np.zeros(layout.length, dtype=np.float64)
    filled: set[int] = set()
    for row in rows:
        if len(row) != 2 * len(keys) + width:
            raise QueryError(
                f"a local result row has {len(row)} values; the layout needs {2 * len(keys) + width}"
            )
        group = 0
        for index, key in enumerate(keys):
            bucket = row[index]
            if bucket == _OUTSIDE:
                raise QueryError(_outside(key, row[len(keys) + width + index]))
            if not isinstance(bucket, int) or not 0 <= bucket < key.size:
                raise QueryError(f"GROUP BY {key.name}: bucket {bucket!r} is not in 0..{key.size - 1}")
            group = group * key.size + bucket
        if group in filled:
            raise QueryError(f"the local result has group {group} twice")
        filled.add(group)
        vector[group * width : (group + 1) * width] = [_float(v) for v in row[len(keys) : len(keys) + width]]
    _check_bounds(vector, layout)
    return vector


def _outside(key: GroupKey, value: object) -> str:
    what = "a missing value (NULL)" if value is None else f"the value {value!r}"
    return (
        f"GROUP BY {key.name}: {what} is outside its declared {key.describe()}; add it to the domain "
        f"in the federation schema, or declare other: true for {key.name!r} to count such rows in an "
        f"{OTHER!r} bucket"
    )


def _float(value: object) -> float:
    if value is None:
        return 0.0  # SUM over no (non-null) values
    if isinstance(value, int | float | Decimal):
        return float(value)
    raise QueryError(f"a local result value {value!r} is not a number")


def _check_bounds(vector: Vector, layout: DenseLayout) -> None:
    outside = np.flatnonzero(~(np.abs(vector) <= layout.bounds))  # NaN fails <= too
    if outside.size:
        group, spec = divmod(int(outside[0]), len(layout.specs))
        found, value = layout.specs[spec], vector[outside[0]]
        raise QueryError(
            f"{found.func.value}({found.column or '*'}) of group {layout.labels()[group]} is {value}, "
            f"outside the bound {layout.spec_bounds[spec]} the secure sum can encode: the data exceed the "
            f"column's declared bounds or max_rows ({layout.max_rows}), or hold NaN"
        )


# What DuckDB may guess a CSV column to be: never BOOLEAN or a date, which its sniffer
# guesses from values such as F/T or 2024-01-01 that the schema declares as strings.
_CSV_TYPES = "['BIGINT', 'DOUBLE', 'VARCHAR']"


def run_local_duckdb(
    aggregate: Aggregate, party: str, layout: DenseLayout, files: Mapping[str, Path]
) -> Vector:
    """``party``'s dense vector for ``aggregate``, computed by in-memory DuckDB over CSV or Parquet files.

    ``files`` maps each table name to its file (``.parquet`` is read as Parquet, anything
    else as CSV with a header, each column an integer, a float or text as DuckDB detects).
    """

    def source(table: str) -> str:
        path = files.get(table)
        if path is None:
            raise QueryError(f"{party}: no file for table {table!r}; files are given for: {', '.join(files)}")
        literal = exp.Literal.string(str(path)).sql(dialect="duckdb")
        if path.suffix.lower() == ".parquet":
            return f"read_parquet({literal})"
        return f"read_csv({literal}, auto_type_candidates = {_CSV_TYPES})"

    sql = local_sql(aggregate, party, layout, dialect="duckdb", source=source)
    with duckdb.connect() as connection:
        try:
            rows = connection.execute(sql).fetchall()
        except duckdb.Error as error:
            raise QueryError(f"the local query at {party} failed: {error}") from None
    return dense_vector(rows, layout)


# -- the receiver -----------------------------------------------------------------------


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
        _check_layout(aggregate, layout)
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
