"""The Conclave-style Python DSL: ``create``, ``concat``, ``aggregate`` ... building the query IR.

Where it sits: one of the two front ends of :mod:`confide.query`, beside SQL; both build
the same :mod:`._ir` tree, so the compiler passes never know which one wrote a query.

The vocabulary is Conclave's (Volgushev et al., "Conclave: secure multi-party
computation on big data", EuroSys 2019; its ``conclave.lang``): :func:`defCol` declares a
column and the parties that own it, :func:`create` a table held by one or several
parties, every operator takes its input relation and a name for its output, and
:func:`collect` ends the program. Two things differ from Conclave:

- there is no global registry: every call returns an immutable :class:`Rel` (the IR so
  far, its columns, and the tables declared on the way), and :func:`collect` returns a
  :class:`Query` holding the IR and the :class:`FederationSchema` its ``create`` calls
  declare;
- columns carry what secure aggregation needs (``bounds``, ``categories``, ``bins``,
  ``other``), and every call checks names and types at once, so a mistake is reported
  where it is made, naming the call, the argument and what is allowed;
- :func:`join` without keys is a cross join (groups with a one-row total), and
  :func:`collect` takes ``reveal``: aggregates besides the result that the receiver may
  see, which operators combining groups at the receiver need (HHI's per-company totals).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from pydantic import ValidationError

from confide._errors import QueryError
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
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
    Project,
    Relation,
    Scan,
    walk,
)
from confide.query._schema import ColumnSchema, FederationSchema, TableSchema

__all__ = [
    "Col",
    "ColumnDef",
    "Query",
    "Rel",
    "aggregate",
    "aggregate_count",
    "aggregate_many",
    "col",
    "collect",
    "concat",
    "create",
    "defCol",
    "divide",
    "filter",
    "join",
    "multiply",
    "project",
]

Value = int | float | str | bool
"""A constant that :func:`filter` compares a column with."""

AggregateTriple = tuple[str | AggFunc, str | None, str]
"""``(fn, over_col, out_name)``, one aggregate of :func:`aggregate_many`."""

# Table and column names end up in the SQL generated for each party's database.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TYPES: Mapping[str, ColumnType] = MappingProxyType(
    {
        "integer": ColumnType.INT,
        "int": ColumnType.INT,
        "float": ColumnType.FLOAT,
        "string": ColumnType.STR,
        "str": ColumnType.STR,
        "bool": ColumnType.BOOL,
        "boolean": ColumnType.BOOL,
    }
)

_OPERATORS: Mapping[str, CompareOp] = MappingProxyType(
    {
        "==": CompareOp.EQ,
        "=": CompareOp.EQ,
        "!=": CompareOp.NE,
        "<": CompareOp.LT,
        "<=": CompareOp.LE,
        ">": CompareOp.GT,
        ">=": CompareOp.GE,
    }
)

# "+" is Conclave's name for sum. The unsafe ones (median, min, max) are accepted here:
# a compiler pass refuses them, and can say why.
_AGGREGATES: Mapping[str, AggFunc] = MappingProxyType(
    {
        "count": AggFunc.COUNT,
        "sum": AggFunc.SUM,
        "+": AggFunc.SUM,
        "mean": AggFunc.MEAN,
        "var": AggFunc.VAR,
        "std": AggFunc.STD,
        "var_pop": AggFunc.VAR_POP,
        "std_pop": AggFunc.STD_POP,
        "median": AggFunc.MEDIAN,
        "min": AggFunc.MIN,
        "max": AggFunc.MAX,
    }
)


@dataclass(frozen=True)
class ColumnDef:
    """A column: its name, its type and declared domain, and the parties that own it."""

    name: str
    schema: ColumnSchema
    owners: frozenset[str] = frozenset()

    @property
    def type(self) -> ColumnType:
        """The column's type."""
        return self.schema.type


@dataclass(frozen=True)
class Col:
    """A column as the right-hand side of :func:`filter` (there a plain ``str`` is a constant)."""

    name: str


@dataclass(frozen=True)
class Rel:
    """A relation under construction: its IR, its columns, and the tables declared so far.

    ``name`` is the name the program gave it (error messages use it); ``tables`` maps each
    table a ``create`` call declared to its parties and columns (read-only).
    """

    name: str
    relation: Relation
    columns: tuple[ColumnDef, ...]
    tables: Mapping[str, TableSchema] = field(hash=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The names of the relation's columns, in order."""
        return tuple(column.name for column in self.columns)


@dataclass(frozen=True)
class Query:
    """A finished program: the IR rooted at :class:`Collect`, and the schema it declares."""

    relation: Collect
    schema: FederationSchema


def col(name: str) -> Col:
    """Name column ``name`` as the right-hand side of :func:`filter`."""
    return Col(name)


def defCol(  # Conclave's name, kept so that Conclave programs read the same
    name: str,
    typ: str | ColumnType,
    owners: str | Iterable[str] | None = None,
    *,
    bounds: Sequence[float] | None = None,
    categories: Sequence[str | int] | None = None,
    bins: Sequence[float] | None = None,
    other: bool = False,
) -> ColumnDef:
    """Declare a column for :func:`create`.

    Parameters
    ----------
    name
        The column's name (an identifier).
    typ
        ``"INTEGER"``/``"int"``, ``"FLOAT"``/``"float"``, ``"STRING"``/``"str"`` or
        ``"BOOL"``/``"bool"`` (any case).
    owners
        The parties that own the column (Conclave's trust set); none by default.
    bounds
        ``(lo, hi)`` of a numeric column; secure sums need them.
    categories
        The values of a ``str`` or ``int`` column that is a GROUP BY key.
    bins
        Increasing edges that bin a numeric column used as a GROUP BY key.
    other
        Whether values outside ``categories`` or ``bins`` form an "other" group.

    Returns
    -------
    ColumnDef
        The column.

    Raises
    ------
    QueryError
        A bad name, type or owner, or an inconsistent domain.
    """
    site = _Site("defCol", name)
    site.identifier("name", name)
    column_type = _TYPES.get(typ.lower()) if isinstance(typ, str) else None
    if column_type is None:
        raise site.error(f"typ {typ!r} is not a column type; use INTEGER, FLOAT, STRING or BOOL")
    owner_ids = frozenset(site.parties("owners", owners)) if owners is not None else frozenset()
    _check_domain(site, column_type, categories, bins)
    try:
        schema = ColumnSchema(
            type=column_type,
            bounds=None if bounds is None else tuple(bounds),
            categories=None if categories is None else tuple(categories),
            bins=None if bins is None else tuple(bins),
            other=other,
        )
    except ValidationError as exc:
        raise site.error(_problems(exc)) from None
    return ColumnDef(name, schema, owner_ids)


def create(name: str, columns: Sequence[ColumnDef], at: str | Iterable[str]) -> Rel:
    """Declare table ``name`` with ``columns``, held by the party or parties ``at``.

    A table at several parties is the :class:`Concat` of one :class:`Scan` per party, in
    sorted party order.

    Parameters
    ----------
    name
        The table's name (an identifier), the same at every party that holds it.
    columns
        Its columns, from :func:`defCol`.
    at
        A party id, or a set or list of them.

    Returns
    -------
    Rel
        The table.

    Raises
    ------
    QueryError
        A bad name, no or repeated columns, no or repeated parties.
    """
    site = _Site("create", name)
    site.identifier("name", name)
    parties = site.parties("at", at)
    if not isinstance(columns, Sequence) or not columns or not all(isinstance(c, ColumnDef) for c in columns):
        raise site.error(f"columns must be a non-empty list of defCol(...) columns, not {columns!r}")
    site.unique("columns", [column.name for column in columns])
    scans = tuple(Scan(name, party) for party in parties)
    relation: Relation = scans[0] if len(scans) == 1 else Concat(scans)
    table = TableSchema(parties=parties, columns={column.name: column.schema for column in columns})
    return Rel(name, relation, tuple(columns), MappingProxyType({name: table}))


def concat(rels: Sequence[Rel], name: str | None = None) -> Rel:
    """The union of relations with the same columns (names, order, types and domains).

    Concats among the inputs are flattened into one :class:`Concat`; a column's owners
    are those who own it in every input.

    Parameters
    ----------
    rels
        Two or more relations.
    name
        The result's name; the first input's by default.

    Returns
    -------
    Rel
        The union.

    Raises
    ------
    QueryError
        Fewer than two inputs, columns that differ, or one party's table twice.
    """
    inputs = list(rels) if isinstance(rels, Sequence) and all(isinstance(r, Rel) for r in rels) else []
    site = _Site("concat", name if name is not None else inputs[0].name if inputs else "")
    if len(inputs) < 2:
        raise site.error("rels must be a list of two or more relations")
    first = inputs[0]
    for rel in inputs[1:]:
        problem = _difference(_schemas(first), _schemas(rel))
        if problem:
            raise site.error(f"{first.name!r} and {rel.name!r} differ: {problem}")
    parts = [part for rel in inputs for part in _concat_parts(rel.relation)]
    for index, part in enumerate(parts):
        if isinstance(part, Scan) and part in parts[:index]:
            raise site.error(
                f"table {part.table!r} at {part.party!r} is included twice; its rows would count twice"
            )
    columns = tuple(
        ColumnDef(c.name, c.schema, frozenset.intersection(*(rel.columns[i].owners for rel in inputs)))
        for i, c in enumerate(first.columns)
    )
    return Rel(site.name, Concat(tuple(parts)), columns, _merge_tables(site, inputs))


def project(rel: Rel, name: str, columns: Sequence[str]) -> Rel:
    """Keep only ``columns`` of ``rel``, in this order; unknown or repeated ones are refused."""
    site = _Site("project", name)
    names = site.names("columns", columns)
    kept = tuple(site.column(rel, "columns", column) for column in names)
    return Rel(name, Project(rel.relation, names), kept, rel.tables)


def filter(rel: Rel, name: str, column: str, operator: str, value: Value | Col) -> Rel:
    """Keep the rows of ``rel`` where ``column operator value`` holds.

    Parameters
    ----------
    rel
        The input.
    name
        The result's name.
    column
        The column compared.
    operator
        ``==``, ``!=``, ``<``, ``<=``, ``>`` or ``>=``; the ordering ones need a numeric column.
    value
        A constant of the column's type, or ``col("other")`` to compare with a column.

    Returns
    -------
    Rel
        The rows kept.

    Raises
    ------
    QueryError
        An unknown column or operator, or a comparison between different types.
    """
    site = _Site("filter", name)
    left = site.column(rel, "column", column)
    op = _OPERATORS.get(operator) if isinstance(operator, str) else None
    if op is None:
        raise site.error(f"operator {operator!r} is not one of ==, !=, <, <=, >, >=")
    if op not in (CompareOp.EQ, CompareOp.NE) and not left.type.numeric:
        raise site.error(
            f"operator {operator!r} needs a numeric column; {column!r} is {left.type}: use == or !="
        )
    predicate = Compare(op, ColumnRef(left.name), _comparand(site, rel, left, value))
    return Rel(name, Filter(rel.relation, predicate), rel.columns, rel.tables)


def multiply(rel: Rel, name: str, target_col: str, operands: Sequence[str | int | float]) -> Rel:
    """Add column ``target_col = operands[0] * operands[1] * ...``.

    Parameters
    ----------
    rel
        The input.
    name
        The result's name.
    target_col
        The new column's name (not a column of ``rel``).
    operands
        Two or more numeric column names or numeric constants.

    Returns
    -------
    Rel
        ``rel`` and the new column, ``int`` if every operand is, else ``float``.

    Raises
    ------
    QueryError
        A taken target name, fewer than two operands, or a non-numeric one.
    """
    return _arithmetic(_Site("multiply", name), "*", rel, target_col, operands)


def divide(rel: Rel, name: str, target_col: str, operands: Sequence[str | int | float]) -> Rel:
    """Add column ``target_col = operands[0] / operands[1] / ...``, a ``float``.

    Parameters
    ----------
    rel
        The input.
    name
        The result's name.
    target_col
        The new column's name (not a column of ``rel``).
    operands
        Two or more numeric column names or numeric constants; no constant divisor is 0.

    Returns
    -------
    Rel
        ``rel`` and the new column.

    Raises
    ------
    QueryError
        A taken target name, fewer than two operands, a non-numeric one, or a 0 divisor.
    """
    return _arithmetic(_Site("divide", name), "/", rel, target_col, operands)


def aggregate(
    rel: Rel, name: str, group_cols: Sequence[str], over_col: str | None, fn: str | AggFunc, out_name: str
) -> Rel:
    """Group ``rel`` by ``group_cols`` and compute ``out_name = fn(over_col)`` per group.

    Parameters
    ----------
    rel
        The input.
    name
        The result's name.
    group_cols
        The GROUP BY columns; an empty list aggregates all rows into one.
    over_col
        The column aggregated; None only with ``count`` (count rows).
    fn
        ``sum`` (or Conclave's ``+``), ``count``, ``mean``, ``var``, ``std``, ``var_pop``,
        ``std_pop``, ``median``, ``min`` or ``max``; all but ``count`` need a numeric column.
    out_name
        The aggregate's column in the result.

    Returns
    -------
    Rel
        The group columns, then ``out_name``.

    Raises
    ------
    QueryError
        Unknown columns or function, or a numeric function over a non-numeric column.
    """
    return _aggregate(_Site("aggregate", name), rel, group_cols, [(fn, over_col, out_name)])


def aggregate_count(rel: Rel, name: str, group_cols: Sequence[str], out_name: str) -> Rel:
    """Count the rows of each group into ``out_name`` (Conclave's ``aggregate_count``)."""
    return _aggregate(_Site("aggregate_count", name), rel, group_cols, [(AggFunc.COUNT, None, out_name)])


def aggregate_many(
    rel: Rel, name: str, group_cols: Sequence[str], aggregates: Sequence[AggregateTriple]
) -> Rel:
    """Several aggregates over the same groups, as SQL's ``SELECT g, AVG(x), STDDEV(x) ... GROUP BY g``.

    Parameters
    ----------
    rel
        The input.
    name
        The result's name.
    group_cols
        The GROUP BY columns.
    aggregates
        ``(fn, over_col, out_name)`` triples, each as in :func:`aggregate`.

    Returns
    -------
    Rel
        The group columns, then each ``out_name`` in order.
    """
    return _aggregate(_Site("aggregate_many", name), rel, group_cols, aggregates)


def join(left: Rel, right: Rel, name: str, left_cols: Sequence[str], right_cols: Sequence[str]) -> Rel:
    """Equi-join ``left`` and ``right`` on ``left_cols[i] == right_cols[i]``.

    The result has ``left``'s columns, then those of ``right`` whose names ``left``
    lacks, so a key named the same on both sides appears once (as the compiler's column
    typing has it; Conclave instead puts the keys first and drops ``right``'s). With no
    keys it is a cross join: every row of ``left`` with every row of ``right``, such as
    each company's total with the one-row total of all companies.

    Parameters
    ----------
    left, right
        The inputs.
    name
        The result's name.
    left_cols, right_cols
        The key columns, pairwise, each pair of one type; both empty for a cross join.

    Returns
    -------
    Rel
        The join.

    Raises
    ------
    QueryError
        Unknown or mismatched keys, a column name on both sides that is not a shared
        key, or a table declared differently on the two sides.
    """
    site = _Site("join", name)
    left_keys = site.names("left_cols", left_cols, allow_empty=True)
    right_keys = site.names("right_cols", right_cols, allow_empty=True)
    if len(left_keys) != len(right_keys):
        raise site.error(
            f"left_cols has {len(left_keys)} columns but right_cols {len(right_keys)}; give pairs"
        )
    on = tuple(zip(left_keys, right_keys, strict=True))
    for left_key, right_key in on:
        a, b = site.column(left, "left_cols", left_key), site.column(right, "right_cols", right_key)
        if a.type is not b.type:
            raise site.error(f"key {a.name!r} is {a.type} but {b.name!r} is {b.type}; keys need one type")
    shared = {a for a, b in on if a == b}
    clash = [c.name for c in right.columns if c.name in left.column_names and c.name not in shared]
    if clash:
        raise site.error(
            f"both sides have column {', '.join(map(repr, clash))}; project it away from one side first"
        )
    columns = (*left.columns, *(c for c in right.columns if c.name not in left.column_names))
    return Rel(name, Join(left.relation, right.relation, on), columns, _merge_tables(site, [left, right]))


def collect(rel: Rel, to: str, *, reveal: Sequence[str] = ()) -> Query:
    """End the program: reveal ``rel`` to party ``to``.

    Parameters
    ----------
    rel
        The result.
    to
        The party (the researcher) that receives it.
    reveal
        Aggregates of the program, besides the result's columns, that ``to`` may see in the
        clear: what an operator at the receiver that combines groups needs (the per-company
        totals behind HHI). Without them such a program is refused when it is compiled.

    Returns
    -------
    Query
        The IR rooted at :class:`Collect`, and the schema the program's ``create`` calls declare.

    Raises
    ------
    QueryError
        A bad ``to``, or a ``reveal`` name that is no aggregate of the program.
    """
    site = _Site("collect", rel.name)
    if not isinstance(to, str) or not to:
        raise site.error(f"to must be a party id (a non-empty string), not {to!r}")
    names = site.names("reveal", reveal, allow_empty=True)
    outputs = [s.out for r in walk(rel.relation) if isinstance(r, Aggregate) for s in r.aggregates]
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise site.error(
            f"reveal: {unknown[0]!r} is not an aggregate of the program; its aggregates are: "
            f"{', '.join(dict.fromkeys(outputs)) or 'none'}"
        )
    return Query(Collect(rel.relation, to, names), FederationSchema(tables=dict(rel.tables)))


# -- checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    """Where in the program a check runs: the call and the name it was given."""

    call: str
    name: str

    def error(self, problem: str) -> QueryError:
        return QueryError(f"{self.call} {self.name!r}: {problem}")

    def identifier(self, arg: str, value: object) -> str:
        if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
            raise self.error(f"{arg} must be an identifier (letters, digits, _), not {value!r}")
        return value

    def parties(self, arg: str, value: str | Iterable[str]) -> tuple[str, ...]:
        items: list[object] = (
            list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
        )
        if not items or not all(isinstance(p, str) and p for p in items):
            raise self.error(f"{arg} must be a party id or a set of them (non-empty strings), not {value!r}")
        self.unique(arg, [str(p) for p in items])
        return tuple(sorted(str(p) for p in items))

    def unique(self, arg: str, names: Sequence[str], hint: str = "") -> None:
        repeated = sorted({item for item in names if names.count(item) > 1})
        if repeated:
            raise self.error(f"{arg} name {', '.join(map(repr, repeated))} more than once{hint}")

    def names(self, arg: str, value: Sequence[str], *, allow_empty: bool = False) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.error(f"{arg} must be a list of column names, not {value!r}")
        if not value and not allow_empty:
            raise self.error(f"{arg} must name at least one column")
        self.unique(arg, value)
        return tuple(value)

    def column(self, rel: Rel, arg: str, column: object) -> ColumnDef:
        for found in rel.columns:
            if found.name == column:
                return found
        known = ", ".join(rel.column_names)
        raise self.error(f"{arg}: {column!r} is not a column of {rel.name!r}; its columns are: {known}")


def _check_domain(
    site: _Site, typ: ColumnType, categories: Sequence[str | int] | None, bins: Sequence[float] | None
) -> None:
    if categories is not None:
        wanted = {ColumnType.STR: str, ColumnType.INT: int}.get(typ)
        if wanted is None or isinstance(categories, str):
            raise site.error(
                f"categories must be a list of values of a str or int column, not {categories!r}"
            )
        if not all(isinstance(c, wanted) and not isinstance(c, bool) for c in categories):
            raise site.error(f"categories of a {typ} column must be {typ} values, not {categories!r}")
    if bins is not None and not typ.numeric:
        raise site.error(f"bins apply to numeric columns, not to a {typ} column; use categories")


def _problems(exc: ValidationError) -> str:
    found = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"]))
        problem = error["msg"].removeprefix("Value error, ")
        found.append(f"{where}: {problem}" if where else problem)
    return "; ".join(found)


def _comparable(a: ColumnType, b: ColumnType) -> bool:
    return a == b or (a.numeric and b.numeric)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _comparand(site: _Site, rel: Rel, left: ColumnDef, value: object) -> Expr:
    if isinstance(value, Col):
        right = site.column(rel, "value", value.name)
        if not _comparable(left.type, right.type):
            raise site.error(f"cannot compare {left.name!r} ({left.type}) with {right.name!r} ({right.type})")
        return ColumnRef(right.name)
    fits = {
        ColumnType.STR: isinstance(value, str),
        ColumnType.BOOL: isinstance(value, bool),
        ColumnType.INT: _is_number(value),
        ColumnType.FLOAT: _is_number(value),
    }[left.type]
    if fits and isinstance(value, int | float | str):
        return Literal(value)
    raise site.error(
        f"value {value!r} does not fit {left.name!r} ({left.type}); "
        f"give a constant of type {left.type}, or col('name') for a column"
    )


def _arithmetic(
    site: _Site, symbol: str, rel: Rel, target_col: str, operands: Sequence[str | int | float]
) -> Rel:
    target = site.identifier("target_col", target_col)
    if target in rel.column_names:
        raise site.error(f"target_col {target!r} is already a column of {rel.name!r}; name a new column")
    if isinstance(operands, str) or not isinstance(operands, Sequence) or len(operands) < 2:
        raise site.error(f"operands must be a list of two or more column names or numbers, not {operands!r}")
    exprs: list[Expr] = []
    types: list[ColumnType] = []
    owners: list[frozenset[str]] = []
    for position, operand in enumerate(operands):
        if isinstance(operand, str):
            column = site.column(rel, "operands", operand)
            if not column.type.numeric:
                raise site.error(
                    f"operand {operand!r} is a {column.type} column; {site.call} needs numeric ones"
                )
            exprs.append(ColumnRef(operand))
            types.append(column.type)
            owners.append(column.owners)
        elif _is_number(operand):
            if symbol == "/" and position > 0 and operand == 0:
                raise site.error("operands divide by the constant 0")
            exprs.append(Literal(operand))
            types.append(ColumnType.INT if isinstance(operand, int) else ColumnType.FLOAT)
        else:
            raise site.error(f"operands are column names or finite numbers, not {operand!r}")
    expr = functools.reduce(lambda acc, nxt: BinaryOp(symbol, acc, nxt), exprs)
    result = ColumnType.INT if symbol == "*" and all(t is ColumnType.INT for t in types) else ColumnType.FLOAT
    # Whoever may see every column operand may see the product or quotient.
    seen_by = frozenset.intersection(*owners) if owners else frozenset()
    column = ColumnDef(target, ColumnSchema(type=result), seen_by)
    return Rel(site.name, Compute(rel.relation, target, expr), (*rel.columns, column), rel.tables)


def _aggregate(
    site: _Site, rel: Rel, group_cols: Sequence[str], aggregates: Sequence[AggregateTriple]
) -> Rel:
    group_by = site.names("group_cols", group_cols, allow_empty=True)
    keys = tuple(site.column(rel, "group_cols", key) for key in group_by)
    if isinstance(aggregates, str) or not isinstance(aggregates, Sequence) or not aggregates:
        raise site.error(
            f"aggregates must be a non-empty list of (fn, over_col, out_name), not {aggregates!r}"
        )
    specs = [_spec(site, rel, fn, over_col, out_name) for fn, over_col, out_name in aggregates]
    outputs = tuple(column for _, column in specs)
    site.unique("the result's columns", [c.name for c in (*keys, *outputs)])
    relation = Aggregate(rel.relation, group_by, tuple(spec for spec, _ in specs))
    return Rel(site.name, relation, (*keys, *outputs), rel.tables)


def _spec(
    site: _Site, rel: Rel, fn: object, over_col: str | None, out_name: str
) -> tuple[AggregateSpec, ColumnDef]:
    func = _AGGREGATES.get(fn) if isinstance(fn, str) else None
    if func is None:
        shown = str(fn) if isinstance(fn, str) else fn  # an AggFunc by its value
        raise site.error(
            f"fn {shown!r} is not an aggregate function; use one of: {', '.join(sorted(_AGGREGATES))}"
        )
    out = site.identifier("out_name", out_name)
    if over_col is None:
        if func is not AggFunc.COUNT:
            raise site.error(f"fn {func} needs an over_col; only count may have none (it counts rows)")
        return AggregateSpec(func, None, out), ColumnDef(out, ColumnSchema(type=ColumnType.INT))
    over = site.column(rel, "over_col", over_col)
    if func is not AggFunc.COUNT and not over.type.numeric:
        raise site.error(
            f"fn {func} needs a numeric over_col; {over.name!r} is {over.type} (only count applies)"
        )
    match func:
        case AggFunc.COUNT:
            result = ColumnType.INT
        case AggFunc.SUM | AggFunc.MIN | AggFunc.MAX:
            result = over.type
        case _:
            result = ColumnType.FLOAT
    return AggregateSpec(func, over.name, out), ColumnDef(out, ColumnSchema(type=result), over.owners)


# -- declared tables ----------------------------------------------------------------------


def _concat_parts(relation: Relation) -> tuple[Relation, ...]:
    return relation.inputs if isinstance(relation, Concat) else (relation,)


def _schemas(rel: Rel) -> dict[str, ColumnSchema]:
    return {column.name: column.schema for column in rel.columns}


def _difference(a: Mapping[str, ColumnSchema], b: Mapping[str, ColumnSchema]) -> str | None:
    if list(a) != list(b):
        return f"columns ({', '.join(a)}) versus ({', '.join(b)})"
    for column, schema in a.items():
        if schema != b[column]:
            return f"column {column!r} is {_render(schema)} versus {_render(b[column])}"
    return None


def _render(schema: ColumnSchema) -> str:
    declared = schema.model_dump(mode="json", exclude_defaults=True)
    return "(" + ", ".join(f"{key}={value!r}" for key, value in declared.items()) + ")"


def _merge_tables(site: _Site, rels: Sequence[Rel]) -> Mapping[str, TableSchema]:
    merged: dict[str, TableSchema] = {}
    for rel in rels:
        for table, declared in rel.tables.items():
            known = merged.get(table)
            if known is None:
                merged[table] = declared
                continue
            problem = _difference(known.columns, declared.columns)
            if problem:
                raise site.error(
                    f"table {table!r} is declared differently at {', '.join(known.parties)} and at "
                    f"{', '.join(declared.parties)}: {problem}; every party must declare the same columns"
                )
            parties = tuple(sorted(set(known.parties) | set(declared.parties)))
            merged[table] = TableSchema(parties=parties, columns=dict(known.columns))
    return MappingProxyType(merged)
