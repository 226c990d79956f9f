"""The DSL's aggregates: ``aggregate``, ``aggregate_count`` and ``aggregate_many``.

Where it sits: on top of :mod:`._dsl` (the DSL's values and checks), beside
:mod:`._dsl_operators`. Each call groups its input by columns and builds an
:class:`~confide.query._ir.Aggregate` with one spec per ``(fn, over_col, out_name)``. Every
function Conclave names is accepted here, the unsafe ones too (``median``, ``min``,
``max``): placement refuses those over several parties, and can say why. Derived ones
(``mean``, ``var``, ``std``) stay as written; the compiler rewrites them into sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from confide.query._dsl import ColumnDef, Rel, Site
from confide.query._ir import AggFunc, Aggregate, AggregateSpec, ColumnType
from confide.query._schema import ColumnSchema

__all__ = ["AggregateTriple", "aggregate", "aggregate_count", "aggregate_many"]

AggregateTriple = tuple[str | AggFunc, str | None, str]
"""``(fn, over_col, out_name)``, one aggregate of :func:`aggregate_many`."""

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
    return _aggregate(Site("aggregate", name), rel, group_cols, [(fn, over_col, out_name)])


def aggregate_count(rel: Rel, name: str, group_cols: Sequence[str], out_name: str) -> Rel:
    """Count the rows of each group into ``out_name`` (Conclave's ``aggregate_count``)."""
    return _aggregate(Site("aggregate_count", name), rel, group_cols, [(AggFunc.COUNT, None, out_name)])


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
    return _aggregate(Site("aggregate_many", name), rel, group_cols, aggregates)


def _aggregate(site: Site, rel: Rel, group_cols: Sequence[str], aggregates: Sequence[AggregateTriple]) -> Rel:
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
    site: Site, rel: Rel, fn: object, over_col: str | None, out_name: str
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
