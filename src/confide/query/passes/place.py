"""Last pass, placement: where each operator runs, or why it cannot run safely.

Every operator gets one of three placements:

- *local at party P*: in the clear inside P's hospital, as SQL over P's own rows;
- *secure sum over P1..Pn*: an aggregate of sums and counts over several parties' rows,
  each party computing its dense partial vector locally and the hub adding them blind;
- *at the receiver*: in the clear at the query's receiver, over aggregates it is allowed
  to see (means from sums and counts, ratios, shares).

What needs general MPC is refused, naming the operator, why, and what is supported:
joins across parties, exact medians / minima / maxima / distinct counts over several
parties, row-level output, GROUP BY keys or sums without declared domains or bounds, and
computations over aggregates the query does not reveal (HHI without per-company totals).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from confide._errors import QueryError
from confide.query._columns import output_columns, parties_of
from confide.query._ir import (
    AggFunc,
    Aggregate,
    BinaryOp,
    BoolExpr,
    Collect,
    ColumnRef,
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
from confide.query._schema import FederationSchema

__all__ = ["Placement", "Plan", "Step", "place"]

SUMMABLE = frozenset({AggFunc.COUNT, AggFunc.SUM, AggFunc.SUM_SQUARES, AggFunc.SUM_PRODUCTS})
_NEED_BOUNDS = frozenset({AggFunc.SUM, AggFunc.SUM_SQUARES, AggFunc.SUM_PRODUCTS})


class Placement(enum.Enum):
    """Where an operator runs."""

    LOCAL = "local"
    SECURE_SUM = "secure sum"
    RECEIVER = "at the receiver"


@dataclass(frozen=True)
class Step:
    """One operator of the plan and where it runs."""

    relation: Relation
    placement: Placement
    parties: tuple[str, ...]
    depth: int


@dataclass(frozen=True)
class Plan:
    """A placed query: its steps, inputs before the operators that use them."""

    root: Collect
    steps: tuple[Step, ...]

    @property
    def receiver(self) -> str:
        """Who gets the result."""
        return self.root.to

    def explain(self) -> str:
        """The plan as text, one operator per line, the root first, inputs indented below it."""
        by_node = {id(s.relation): s for s in self.steps}
        lines: list[str] = []

        def show(relation: Relation, depth: int) -> None:
            step = by_node[id(relation)]
            lines.append(f"{'  ' * depth}{_describe(relation)}  [{_where(step)}]")
            for child in children(relation):
                show(child, depth + 1)

        show(self.root, 0)
        return "\n".join(lines)


def place(relation: Relation, schema: FederationSchema) -> Plan:
    """Place every operator of ``relation`` (rooted at ``Collect``); :class:`QueryError` if unsafe."""
    if not isinstance(relation, Collect):
        raise QueryError("a query must end in collect (the receiver of its result)")
    steps: list[Step] = []
    _place(relation, schema, steps, 0, relation.reveal)
    return Plan(relation, tuple(steps))


def _place(
    relation: Relation, schema: FederationSchema, steps: list[Step], depth: int, reveal: tuple[str, ...]
) -> tuple[Placement, bool]:
    """Place ``relation``'s subtree; return its placement and whether it is aggregated."""
    parties = tuple(sorted(parties_of(relation)))
    placement: Placement
    aggregated = False
    match relation:
        case Scan():
            placement = Placement.LOCAL
        case Concat(inputs):
            for r in inputs:
                _place(r, schema, steps, depth + 1, reveal)
            placement = Placement.SECURE_SUM  # combined only by the aggregate above it
        case Join(left, right, on):
            _place(left, schema, steps, depth + 1, reveal)
            _place(right, schema, steps, depth + 1, reveal)
            if len(parties) > 1:
                pairs = ", ".join(f"{a} = {b}" for a, b in on)
                raise QueryError(
                    f"join on ({pairs}) across parties {', '.join(parties)} needs private set intersection "
                    "or general MPC, which confide does not run; supported: joins of one party's own tables, "
                    "before aggregation"
                )
            placement = Placement.LOCAL
        case Aggregate():
            placement, aggregated = _place_aggregate(relation, schema, steps, depth, reveal), True
        case Filter() | Project() | Compute():
            inner, aggregated = _place(relation.input, schema, steps, depth + 1, reveal)
            if isinstance(relation.input, Concat):
                raise QueryError(f"{_describe(relation)} over rows of several parties: push-down did not run")
            placement = Placement.LOCAL if inner is Placement.LOCAL else Placement.RECEIVER
        case Collect():
            inner, aggregated = _place(relation.input, schema, steps, depth + 1, reveal)
            if not aggregated:
                where = ", ".join(parties)
                raise QueryError(
                    f"collect would reveal rows of {where}'s data (row-level output); only aggregates "
                    "may leave a hospital: aggregate with GROUP BY over declared domains "
                    "(count, sum, mean, var, std, corr)"
                )
            _check_reveal(relation, schema)
            placement = Placement.RECEIVER
    steps.append(Step(relation, placement, parties, depth))
    return placement, aggregated


def _place_aggregate(
    relation: Aggregate, schema: FederationSchema, steps: list[Step], depth: int, reveal: tuple[str, ...]
) -> Placement:
    inner, _ = _place(relation.input, schema, steps, depth + 1, reveal)
    if inner is Placement.LOCAL:
        return Placement.LOCAL  # one party's own aggregate, computed where its rows are
    if inner is Placement.RECEIVER or not isinstance(relation.input, Concat):
        return Placement.RECEIVER  # an aggregate over aggregates the receiver holds
    columns = output_columns(relation.input, schema)
    parties = ", ".join(sorted(parties_of(relation)))
    for spec in relation.aggregates:
        if spec.func not in SUMMABLE:
            hint = (
                "stats.histogram gives approximate quantiles" if spec.func is AggFunc.MEDIAN else "count, sum"
            )
            raise QueryError(
                f"{spec.func.value}({spec.column}) over {parties} needs general MPC (it is not a sum "
                "of local parts), which confide does not run; supported: count, sum, mean, var, std, "
                f"corr ({hint})"
            )
        for column in (spec.column, spec.other):
            if spec.func in _NEED_BOUNDS and column is not None and columns[column].bounds is None:
                raise QueryError(
                    f"{spec.func.value}({column}) over {parties} is a secure sum, which needs declared "
                    f"bounds for {column!r}: add bounds: [lo, hi] to its column in the federation schema"
                )
    for key in relation.group_by:
        if columns[key].domain is None:
            raise QueryError(
                f"GROUP BY {key} over {parties}: {key!r} has no declared categories or bins, so the "
                "parties could not send vectors of one shape without revealing which keys they hold; "
                "declare its domain"
            )
    return Placement.SECURE_SUM


def _check_reveal(collect: Collect, schema: FederationSchema) -> None:
    """With an explicit ``reveal`` list, no aggregate outside it may reach the receiver."""
    if not collect.reveal:
        return
    allowed = set(collect.reveal)
    for relation in _aggregates_over_parties(collect.input):
        for name in (s.out for s in relation.aggregates if not s.out.startswith("__")):
            if name not in allowed:
                raise QueryError(
                    f"the query reveals only {sorted(allowed)}, but computing them needs the secret "
                    f"aggregate {name!r} in the clear at the receiver; products or ratios of secret "
                    "aggregates without revealing their factors need general MPC, which confide does not "
                    f"run: reveal {name!r} or drop what depends on it"
                )


def _aggregates_over_parties(relation: Relation) -> list[Aggregate]:
    found: list[Aggregate] = []
    match relation:
        case Aggregate(source, _, _) if isinstance(source, Concat):
            found.append(relation)
        case Scan():
            return found
        case Concat(inputs):
            for r in inputs:
                found += _aggregates_over_parties(r)
            return found
        case Join(left, right, _):
            return _aggregates_over_parties(left) + _aggregates_over_parties(right)
    if not isinstance(relation, Scan | Concat | Join):
        found += _aggregates_over_parties(relation.input)
    return found


def expr_text(expr: Expr) -> str:
    """An expression as SQL-like text."""
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


def _where(step: Step) -> str:
    if step.placement is Placement.LOCAL:
        return f"local at {', '.join(step.parties)}"
    if step.placement is Placement.SECURE_SUM:
        return f"secure sum over {', '.join(step.parties)}"
    return "at the receiver"


def _describe(relation: Relation) -> str:
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
            funcs = ", ".join(f"{s.out} = {s.func.value}({s.column or '*'})" for s in aggregates)
            by = f" by {', '.join(group_by)}" if group_by else ""
            return f"aggregate {funcs}{by}"
        case Join(_, _, on):
            return f"join on {', '.join(f'{a} = {b}' for a, b in on)}"
        case Collect(_, to, _):
            return f"collect to {to}"
