"""Part of placement: what the receiver must see in the clear, checked against what the query reveals.

A secure sum gives the receiver each group's totals. Arithmetic *within* a group over
its own totals (a mean, a variance, a ratio of two sums) is what the query asks for. An
operator at the receiver that *combines several groups* (a total over companies, a sum of
squared shares as in the Herfindahl-Hirschman index) or joins on a secret value needs
every group's value in the clear: computing it without revealing them would need general
MPC. So each secret aggregate such an operator reads must be revealed: be a column of the
query's result, or be named in ``Collect.reveal`` (the DSL's ``collect(..., reveal=...)``).

The check follows column names down from the result, through the operators at the
receiver, to the secure sums: names are unique within a relation and only an aggregate
rebinds them, so a name the result shows above an aggregate is not the one below it. A
secure sum's column is revealed where it reaches the result unchanged on any path: a
``WITH`` query read twice may be shown on one path and totalled on another.
"""

from __future__ import annotations

from collections.abc import Iterator

from confide._errors import QueryError
from confide.query._columns import parties_of
from confide.query._ir import (
    Aggregate,
    AggregateSpec,
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
    aggregate_text,
    expr_text,
)

__all__ = ["check_reveal"]


def check_reveal(collect: Collect, result: tuple[str, ...]) -> None:
    """:class:`QueryError` if an operator at the receiver needs a secret aggregate the query hides.

    ``result`` are the columns of the query's result; they are revealed, and so is every
    name in ``collect.reveal``.
    """
    declared = frozenset(collect.reveal)
    seen = list(_visible(collect.input, frozenset(result) | declared, declared))
    revealed = {
        (relation, name)
        for relation, visible in seen
        if isinstance(relation, Aggregate) and not _at_receiver(relation)
        for name in visible
    }
    for relation, visible in seen:
        match relation:
            case Aggregate(source, group_by, specs) if _at_receiver(relation):
                below = (visible & frozenset(group_by)) | declared
                for spec in specs:
                    for column in (spec.column, spec.other):
                        if column is not None:
                            _require(column, source, below, revealed, _spec_text(spec, source))
            case Join(left, right, on):
                for a, b in on:
                    _require(a, left, visible, revealed, f"join on {a} = {b}")
                    _require(b, right, visible, revealed, f"join on {a} = {b}")


def _is_aggregated(relation: Relation) -> bool:
    """Whether ``relation``'s rows are aggregates (groups), not a party's rows."""
    match relation:
        case Aggregate():
            return True
        case Scan() | Concat():
            return False
        case Join(left, right, _):
            return _is_aggregated(left) and _is_aggregated(right)
        case _:
            return _is_aggregated(relation.input)


def _at_receiver(relation: Relation) -> bool:
    """Whether ``relation`` runs over aggregates (at the receiver), above the secure sums."""
    return not isinstance(relation, Scan | Concat) and _is_aggregated(
        relation.input if isinstance(relation, Aggregate) else relation
    )


_Revealed = set[tuple[Aggregate, str]]


def _visible(
    relation: Relation, visible: frozenset[str], declared: frozenset[str]
) -> Iterator[tuple[Relation, frozenset[str]]]:
    """Each operator from ``relation`` down to the secure sums, with its columns the result shows."""
    yield relation, visible
    if not _at_receiver(relation):
        return
    match relation:
        case Aggregate(source, group_by, _):
            yield from _visible(source, (visible & frozenset(group_by)) | declared, declared)
        case Join(left, right, _):
            yield from _visible(left, visible, declared)
            yield from _visible(right, visible, declared)
        case Compute() | Filter() | Project():
            yield from _visible(relation.input, visible, declared)


def _require(name: str, relation: Relation, visible: frozenset[str], revealed: _Revealed, by: str) -> None:
    """Refuse if ``name`` of ``relation`` is computed from a secret aggregate that is not revealed."""
    for secret, column, named in _secrets(name, relation, visible, revealed, None):
        spec = next(s for s in secret.aggregates if s.out == column)
        groups = f" by {', '.join(secret.group_by)}" if secret.group_by else ""
        what = f"{aggregate_text(spec)}{groups} over {', '.join(sorted(parties_of(secret)))}"
        shown = aggregate_text(spec) if column.startswith("__") else repr(column)
        how = (
            f"select {aggregate_text(spec)} under a name in the result"
            if named is None
            else f"put {named!r} in the result, or collect(..., reveal=[{named!r}]) in the DSL"
        )
        raise QueryError(
            f"{by} at the receiver combines the values of several groups, so it needs the secret "
            f"aggregate {shown} in the clear ({what}), which the query does not reveal; products or "
            "ratios of secret aggregates across groups (such as HHI without the per-company totals) "
            f"need general MPC, which confide does not run. Supported: reveal it ({how}), or "
            "drop what depends on it"
        )


def _secrets(
    name: str, relation: Relation, visible: frozenset[str], revealed: _Revealed, named: str | None
) -> Iterator[tuple[Aggregate, str, str | None]]:
    """The secure sums' columns that ``name`` (of ``relation``) is computed from and that are not revealed.

    Each comes with ``named``: the nearest column on the way that the analyst named (not
    ``__``), whose revealing would do.
    """
    if name in visible:
        return
    named = named if name.startswith("__") else name
    match relation:
        case Aggregate(_, group_by, _) if not _at_receiver(relation):
            # Group keys are the declared domain's labels: public.
            if name not in group_by and (relation, name) not in revealed:
                yield relation, name, named
        case Aggregate():
            return  # an aggregate at the receiver: checked where it is computed
        case Compute(source, computed, expr) if name == computed:
            for column in _columns(expr):
                yield from _secrets(column, source, visible, revealed, named)
        case Compute() | Filter() | Project():
            yield from _secrets(name, relation.input, visible, revealed, named)
        case Join(left, right, _):
            side = left if name in _names(left) else right
            yield from _secrets(name, side, visible, revealed, named)


def _names(relation: Relation) -> frozenset[str]:
    """The column names ``relation`` outputs, for relations at the receiver (no schema needed)."""
    match relation:
        case Aggregate(_, group_by, specs):
            return frozenset(group_by) | {s.out for s in specs}
        case Project(_, columns):
            return frozenset(columns)
        case Compute(source, name, _):
            return _names(source) | {name}
        case Join(left, right, _):
            return _names(left) | _names(right)
        case Filter(source, _) | Collect(source, _, _):
            return _names(source)
        case Scan() | Concat():
            return frozenset()


def _columns(expr: Expr) -> Iterator[str]:
    match expr:
        case ColumnRef(name):
            yield name
        case Literal():
            return
        case BinaryOp(_, left, right) | Compare(_, left, right):
            yield from _columns(left)
            yield from _columns(right)
        case BoolExpr(_, operands):
            for operand in operands:
                yield from _columns(operand)
        case Not(operand) | Sqrt(operand):
            yield from _columns(operand)


def _spec_text(spec: AggregateSpec, source: Relation) -> str:
    """``sum(share * share)`` for an aggregate over a per-row computation the SQL front end named."""
    while isinstance(source, Filter | Project | Compute):
        if isinstance(source, Compute) and source.name == spec.column and spec.column.startswith("__"):
            return f"{spec.func.value}({expr_text(source.expr).removeprefix('(').removesuffix(')')})"
        source = source.input
    return aggregate_text(spec)
