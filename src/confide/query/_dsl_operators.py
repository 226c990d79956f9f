"""The DSL's relational operators: concat, project, filter, multiply, divide, join, and collect.

Where it sits: on top of :mod:`._dsl` (the DSL's values and checks), beside
:mod:`._dsl_aggregate`. Each operator takes its input :class:`~._dsl.Rel` and a name for
its output, checks its arguments at once (naming the call, the argument and what is
allowed), and returns a new ``Rel`` whose IR wraps the input's: :func:`concat` a
:class:`Concat`, :func:`filter` a :class:`Filter`, :func:`multiply` and :func:`divide` a
:class:`Compute`, and so on. :func:`collect` ends the program with a :class:`Query`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from confide.query._dsl import Col, ColumnDef, Query, Rel, Site, merge_tables, schema_difference
from confide.query._ir import (
    Aggregate,
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
from confide.query._schema import ColumnSchema, FederationSchema

__all__ = ["Value", "collect", "concat", "divide", "filter", "join", "multiply", "project"]

Value = int | float | str | bool
"""A constant that :func:`filter` compares a column with."""

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
    site = Site("concat", name if name is not None else inputs[0].name if inputs else "")
    if len(inputs) < 2:
        raise site.error("rels must be a list of two or more relations")
    first = inputs[0]
    for rel in inputs[1:]:
        problem = schema_difference(_schemas(first), _schemas(rel))
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
    return Rel(site.name, Concat(tuple(parts)), columns, merge_tables(site, inputs))


def project(rel: Rel, name: str, columns: Sequence[str]) -> Rel:
    """Keep only ``columns`` of ``rel``, in this order; unknown or repeated ones are refused."""
    site = Site("project", name)
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
    site = Site("filter", name)
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
    return _arithmetic(Site("multiply", name), "*", rel, target_col, operands)


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
    return _arithmetic(Site("divide", name), "/", rel, target_col, operands)


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
    site = Site("join", name)
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
    return Rel(name, Join(left.relation, right.relation, on), columns, merge_tables(site, [left, right]))


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
    site = Site("collect", rel.name)
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


def _comparable(a: ColumnType, b: ColumnType) -> bool:
    return a == b or (a.numeric and b.numeric)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _comparand(site: Site, rel: Rel, left: ColumnDef, value: object) -> Expr:
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
    site: Site, symbol: str, rel: Rel, target_col: str, operands: Sequence[str | int | float]
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


def _concat_parts(relation: Relation) -> tuple[Relation, ...]:
    return relation.inputs if isinstance(relation, Concat) else (relation,)


def _schemas(rel: Rel) -> dict[str, ColumnSchema]:
    return {column.name: column.schema for column in rel.columns}
