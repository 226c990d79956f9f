"""The query IR: one typed, immutable tree that both front ends (SQL, the DSL) build.

Relations are frozen dataclasses that hold their inputs, so a tree can be rewritten by
pure functions (the compiler passes) and compared by value in tests. Expressions are a
small closed set (column, literal, arithmetic, comparison, boolean). Nothing here knows
about parties' data or networks; :mod:`._schema` says where tables live, the passes
decide what runs where.

Relations, after Conclave's vocabulary:

- :class:`Scan` one party's table (``create`` in the DSL);
- :class:`Concat` the union of same-shaped relations held by several parties;
- :class:`Project` keep and order columns;
- :class:`Filter` keep rows where a predicate holds;
- :class:`Compute` add a column computed per row (``multiply``, ``divide``);
- :class:`Aggregate` group by columns and aggregate (count, sum, mean, var, std, ...);
- :class:`Join` an equi-join of two relations;
- :class:`Collect` reveal a relation to one party (the end of every query).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "AggFunc",
    "Aggregate",
    "AggregateSpec",
    "BinaryOp",
    "BoolExpr",
    "BoolOp",
    "Collect",
    "ColumnRef",
    "ColumnType",
    "Compare",
    "CompareOp",
    "Compute",
    "Concat",
    "Expr",
    "Filter",
    "Join",
    "Literal",
    "Not",
    "Project",
    "Relation",
    "Scan",
    "Sqrt",
    "aggregate_text",
    "children",
    "describe",
    "expr_text",
    "walk",
]


class ColumnType(enum.StrEnum):
    """The types a column may have."""

    INT = "int"
    FLOAT = "float"
    STR = "str"
    BOOL = "bool"

    @property
    def numeric(self) -> bool:
        """Whether arithmetic and numeric aggregates apply."""
        return self in (ColumnType.INT, ColumnType.FLOAT)


class AggFunc(enum.StrEnum):
    """Aggregate functions; the last ones cannot be computed by secure sums alone."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    VAR = "var"  # sample variance
    STD = "std"  # sample standard deviation
    VAR_POP = "var_pop"
    STD_POP = "std_pop"
    CORR = "corr"
    SUM_SQUARES = "sum_squares"  # internal: what VAR and STD are rewritten into
    SUM_PRODUCTS = "sum_products"  # internal: what CORR is rewritten into
    MEDIAN = "median"
    MIN = "min"
    MAX = "max"
    COUNT_DISTINCT = "count_distinct"


class CompareOp(enum.StrEnum):
    """Comparison operators."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class BoolOp(enum.StrEnum):
    """Boolean connectives."""

    AND = "and"
    OR = "or"


# -- expressions ------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRef:
    """A column of the relation the expression is evaluated over."""

    name: str


@dataclass(frozen=True)
class Literal:
    """A constant."""

    value: int | float | str | bool | None


@dataclass(frozen=True)
class BinaryOp:
    """Arithmetic: ``+ - * /``."""

    op: str
    left: Expr
    right: Expr

    def __post_init__(self) -> None:
        if self.op not in ("+", "-", "*", "/"):
            raise ValueError(f"unknown arithmetic operator {self.op!r}")


@dataclass(frozen=True)
class Compare:
    """A comparison between two expressions."""

    op: CompareOp
    left: Expr
    right: Expr


@dataclass(frozen=True)
class BoolExpr:
    """``and`` / ``or`` over two or more predicates."""

    op: BoolOp
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    """Negation of a predicate."""

    operand: Expr


@dataclass(frozen=True)
class Sqrt:
    """Square root (what standard deviations are finalised with)."""

    operand: Expr


Expr = ColumnRef | Literal | BinaryOp | Compare | BoolExpr | Not | Sqrt


# -- relations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scan:
    """Table ``table`` as held by ``party`` (the DSL's ``create``)."""

    table: str
    party: str


@dataclass(frozen=True)
class Concat:
    """The union of relations with the same columns, typically one per party."""

    inputs: tuple[Relation, ...]


@dataclass(frozen=True)
class Project:
    """Only ``columns``, in this order."""

    input: Relation
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Filter:
    """Rows of ``input`` where ``predicate`` holds."""

    input: Relation
    predicate: Expr


@dataclass(frozen=True)
class Compute:
    """``input`` with one more column, ``name = expr`` per row."""

    input: Relation
    name: str
    expr: Expr


@dataclass(frozen=True)
class AggregateSpec:
    """One aggregate: ``out = func(column)``.

    ``column`` is None for ``COUNT(*)``. ``other`` is the second column of a two-column
    aggregate (CORR, SUM_PRODUCTS); given to COUNT, SUM or SUM_SQUARES it restricts them to
    the rows where ``other`` is not NULL either, as SQL's ``REGR_COUNT`` and ``REGR_SXX`` are
    (what CORR is rewritten into: every sum over the same complete pairs).
    """

    func: AggFunc
    column: str | None
    out: str
    other: str | None = None


@dataclass(frozen=True)
class Aggregate:
    """``input`` grouped by ``group_by``, one row per group with ``aggregates``."""

    input: Relation
    group_by: tuple[str, ...]
    aggregates: tuple[AggregateSpec, ...]


@dataclass(frozen=True)
class Join:
    """Equi-join on pairs of columns (left column, right column); no pairs: a cross join."""

    left: Relation
    right: Relation
    on: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Collect:
    """Reveal ``input`` to ``to`` (a researcher or party): the query's result."""

    input: Relation
    to: str
    reveal: tuple[str, ...] = field(default=())


Relation = Scan | Concat | Project | Filter | Compute | Aggregate | Join | Collect


def children(relation: Relation) -> tuple[Relation, ...]:
    """The direct inputs of ``relation``."""
    match relation:
        case Scan():
            return ()
        case Concat(inputs):
            return inputs
        case Join(left, right, _):
            return (left, right)
        case Project() | Filter() | Compute() | Aggregate() | Collect():
            return (relation.input,)


def walk(relation: Relation) -> list[Relation]:
    """Every relation of the tree, inputs before the relations that use them."""
    found: list[Relation] = []
    for child in children(relation):
        found.extend(walk(child))
    found.append(relation)
    return found


def expr_text(expr: Expr) -> str:
    """An expression as SQL-like text, parenthesised as the tree is (``(a / b)``)."""
    match expr:
        case ColumnRef(name):
            return name
        case Literal(value):
            return "null" if value is None else repr(value)
        case BinaryOp(op, left, right):
            return f"({expr_text(left)} {op} {expr_text(right)})"
        case Compare(op, left, right):
            return f"{expr_text(left)} {op.value} {expr_text(right)}"
        case BoolExpr(op, operands):
            return "(" + f" {op.value} ".join(expr_text(o) for o in operands) + ")"
        case Not(operand):
            return f"not {expr_text(operand)}"
        case Sqrt(operand):
            return f"sqrt({expr_text(operand)})"


def aggregate_text(spec: AggregateSpec) -> str:
    """One aggregate as text: ``sum(amount)``, ``count(*)``, ``corr(x, y)``."""
    arguments = ", ".join(c for c in (spec.column or "*", spec.other) if c is not None)
    return f"{spec.func.value}({arguments})"


def describe(relation: Relation) -> str:
    """One operator as a line of text, without its inputs (``filter age >= 30``)."""
    match relation:
        case Scan(table, party):
            return f"scan {table} @ {party}"
        case Concat(inputs):
            return f"concat of {len(inputs)}"
        case Project(_, columns):
            return f"project {', '.join(columns)}"
        case Filter(_, predicate):
            return f"filter {expr_text(predicate)}"
        case Compute(_, name, expr):
            return f"compute {name} = {expr_text(expr)}"
        case Aggregate(_, group_by, aggregates):
            funcs = ", ".join(f"{s.out} = {aggregate_text(s)}" for s in aggregates)
            by = f" by {', '.join(group_by)}" if group_by else ""
            return f"aggregate {funcs}{by}"
        case Join(_, _, on):
            return f"join on {', '.join(f'{a} = {b}' for a, b in on)}" if on else "cross join"
        case Collect(_, to, _):
            return f"collect to {to}"
