"""Last pass, placement: where each operator runs, or why it cannot run safely.

Every operator gets one of three placements:

- *local at party P*: in the clear inside P's hospital, as SQL over P's own rows;
- *secure sum over P1..Pn*: an aggregate of sums and counts over several parties' rows,
  each party computing its dense partial vector locally and the hub adding them blind;
- *at the receiver*: in the clear at the query's receiver, over aggregates it is allowed
  to see (means from sums and counts, ratios, shares, joins of groups with one another or
  with a total).

What needs general MPC is refused, naming the operator, why, and what is supported:
joins across parties, exact medians / minima / maxima / distinct counts over several
parties, row-level output, GROUP BY keys or sums without declared domains or bounds, and
computations over aggregates the query does not reveal (HHI without per-company totals;
see :mod:`.reveal`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from confide._errors import QueryError
from confide.query._columns import ColumnTypes
from confide.query._ir import (
    AggFunc,
    Aggregate,
    Collect,
    Compute,
    Concat,
    Filter,
    Join,
    Project,
    Relation,
    Scan,
    children,
    describe,
)
from confide.query._schema import FederationSchema
from confide.query.passes.reveal import check_reveal

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
        shown: set[Relation] = set()

        def show(relation: Relation, depth: int) -> None:
            step = by_node[id(relation)]
            # A WITH query read twice: its operators above the parties' rows, shown once.
            again = (
                step.placement is not Placement.LOCAL
                and not isinstance(relation, Concat)
                and relation in shown
            )
            lines.append(
                f"{'  ' * depth}{describe(relation)}  [{_where(step)}{', as above' if again else ''}]"
            )
            shown.add(relation)
            for child in () if again else children(relation):
                show(child, depth + 1)

        show(self.root, 0)
        return "\n".join(lines)


def place(relation: Relation, schema: FederationSchema) -> Plan:
    """Place every operator of ``relation`` (rooted at ``Collect``); :class:`QueryError` if unsafe.

    The tree is typed first, once: that re-checks what the rewriting passes made, and
    placement's checks of each secure sum read the same types.
    """
    types = ColumnTypes(schema)
    types.of(relation)
    if not isinstance(relation, Collect):
        raise QueryError("a query must end in collect (the receiver of its result)")
    steps: list[Step] = []
    _place(relation, types, steps, 0)
    return Plan(relation, tuple(steps))


def _place(relation: Relation, types: ColumnTypes, steps: list[Step], depth: int) -> tuple[Placement, bool]:
    """Place ``relation``'s subtree; return its placement and whether it is aggregated."""
    parties = tuple(sorted(types.parties(relation)))
    placement: Placement
    aggregated = False
    match relation:
        case Scan():
            placement = Placement.LOCAL
        case Concat(inputs):
            for r in inputs:
                _place(r, types, steps, depth + 1)
            placement = Placement.SECURE_SUM  # combined only by the aggregate above it
        case Join(left, right, on):
            sides = [_place(r, types, steps, depth + 1) for r in (left, right)]
            if all(agg and where is not Placement.LOCAL for where, agg in sides):
                placement, aggregated = Placement.RECEIVER, True  # groups the receiver holds, matched
            elif len(parties) > 1:
                pairs = f"join on ({', '.join(f'{a} = {b}' for a, b in on)})" if on else "cross join"
                raise QueryError(
                    f"{pairs} across parties {', '.join(parties)} needs private set intersection or "
                    "general MPC, which confide does not run; supported: joins of one party's own tables "
                    "before aggregation, and joins of aggregates over all parties (at the receiver)"
                )
            else:
                placement = Placement.LOCAL
        case Aggregate():
            placement, aggregated = _place_aggregate(relation, types, steps, depth), True
        case Filter() | Project() | Compute():
            inner, aggregated = _place(relation.input, types, steps, depth + 1)
            if isinstance(relation.input, Concat):
                raise QueryError(f"{describe(relation)} over rows of several parties: push-down did not run")
            placement = Placement.LOCAL if inner is Placement.LOCAL else Placement.RECEIVER
        case Collect():
            inner, aggregated = _place(relation.input, types, steps, depth + 1)
            if not aggregated:
                where = ", ".join(parties)
                raise QueryError(
                    f"collect would reveal rows of {where}'s data (row-level output); only aggregates "
                    "may leave a hospital: aggregate with GROUP BY over declared domains "
                    "(count, sum, mean, var, std, corr)"
                )
            check_reveal(relation, tuple(types.of(relation.input)))
            placement = Placement.RECEIVER
    steps.append(Step(relation, placement, parties, depth))
    return placement, aggregated


def _place_aggregate(relation: Aggregate, types: ColumnTypes, steps: list[Step], depth: int) -> Placement:
    inner, _ = _place(relation.input, types, steps, depth + 1)
    if inner is Placement.LOCAL:
        return Placement.LOCAL  # one party's own aggregate, computed where its rows are
    if inner is Placement.RECEIVER or not isinstance(relation.input, Concat):
        return Placement.RECEIVER  # an aggregate over aggregates the receiver holds
    columns = types.of(relation.input)
    parties = ", ".join(sorted(types.parties(relation)))
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
        summed = (spec.column, spec.other) if spec.func is AggFunc.SUM_PRODUCTS else (spec.column,)
        for column in summed:
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


def _where(step: Step) -> str:
    if step.placement is Placement.LOCAL:
        return f"local at {', '.join(step.parties)}"
    if step.placement is Placement.SECURE_SUM:
        return f"secure sum over {', '.join(step.parties)}"
    return "at the receiver"
