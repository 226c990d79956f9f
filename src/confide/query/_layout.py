"""The dense layout of a secure sum: one vector shape that every party fills the same way.

Where it sits: after :mod:`.passes` (a placed :class:`Plan`), around the secure-sum
protocol, which only adds vectors. Every Aggregate placed as a secure sum has a ``Concat``
input with one local subtree per party (push-down put the row-level work there). For it:

1. :func:`secure_aggregates` lists those aggregates, in plan order (index ``i`` below);
2. :meth:`DenseLayout.for_aggregate` fixes the vector's shape from the declared GROUP BY
   domains, so every party sends the same length and none learns which keys another holds,
   and the per-element bounds the fixed-point encoder needs;
3. each party runs :func:`~confide.query._local_sql.local_sql` where its data is (DuckDB
   over files, PostgreSQL, ...): one row per non-empty bucket, which :func:`dense_vector`
   places into the vector;
   :func:`element_counts` says how many of its rows each element comes from, so the
   party withholds the groups below its ``min_count``;
4. the protocol adds the parties' vectors (not here);
5. the receiver runs :func:`~confide.query._receiver.finalise` over the totals: the plan's
   operators above the secure sums (means, variances, ratios, HAVING, projections).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from confide._errors import QueryError
from confide.query._columns import ColumnInfo, ColumnTypes
from confide.query._ir import AggFunc, Aggregate, AggregateSpec, ColumnType, Concat
from confide.query._schema import FederationSchema
from confide.query.passes.place import SUMMABLE, Placement, Plan

__all__ = [
    "OTHER",
    "OUTSIDE",
    "DenseLayout",
    "GroupKey",
    "Label",
    "Vector",
    "check_layout",
    "dense_vector",
    "element_counts",
    "number_text",
    "secure_aggregates",
]

Label = str | int
Vector = npt.NDArray[np.float64]

OTHER = "other"  # the label of a key's bucket for values outside its declared domain
OUTSIDE = -1  # the bucket of a value outside the domain of a key without ``other``


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
            edges = itertools.pairwise(self.bins)
            inner = tuple(f"[{number_text(lo)}, {number_text(hi)})" for lo, hi in edges)
        return (*inner, OTHER) if self.other else inner

    @property
    def size(self) -> int:
        """The number of buckets."""
        return len(self.labels)

    def describe(self) -> str:
        """The declared domain, for error messages."""
        if self.bins:
            return f"bins [{number_text(self.bins[0])}, {number_text(self.bins[-1])})"
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
    clips: tuple[tuple[str, float, float], ...] = ()
    """The declared bounds of every summed column: each value is clipped into them at the node."""

    @classmethod
    def for_aggregate(cls, aggregate: Aggregate, schema: FederationSchema, *, max_rows: int) -> DenseLayout:
        """The layout of ``aggregate``; ``max_rows`` bounds the rows any group adds up (all parties)."""
        if max_rows < 1:
            raise QueryError(f"max_rows must be at least 1, not {max_rows}")
        columns = ColumnTypes(schema).of(aggregate.input)
        keys = tuple(_group_key(name, columns[name]) for name in aggregate.group_by)
        bounds = tuple(_spec_bound(spec, columns, max_rows) for spec in aggregate.aggregates)
        summed = dict.fromkeys(
            c for s in aggregate.aggregates if s.func is not AggFunc.COUNT for c in (s.column, s.other) if c
        )
        clips = tuple((c, *_declared(columns[c])) for c in summed)
        return cls(keys, aggregate.aggregates, bounds, max_rows, clips)

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


def _declared(column: ColumnInfo) -> tuple[float, float]:
    if column.bounds is None:  # pragma: no cover - _spec_bound refused it first
        raise QueryError("a summed column has no declared bounds")
    return float(column.bounds[0]), float(column.bounds[1])


def check_layout(aggregate: Aggregate, layout: DenseLayout) -> None:
    """Refuse ``layout`` unless it was built for ``aggregate`` (the same keys and specs)."""
    if tuple(k.name for k in layout.keys) != aggregate.group_by or layout.specs != aggregate.aggregates:
        raise QueryError("the dense layout was built for another aggregate; build it with for_aggregate")


def number_text(value: float) -> str:
    """A number as SQL and bin labels write it: ``30``, not ``30.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def dense_vector(rows: Iterable[Sequence[object]], layout: DenseLayout) -> Vector:
    """Place the rows of :func:`~confide.query._local_sql.local_sql` into the vector; empty groups are zeros.

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
            if bucket == OUTSIDE:
                raise QueryError(_outside(key))
            if not isinstance(bucket, int) or not 0 <= bucket < key.size:
                raise QueryError(f"GROUP BY {key.name}: bucket {bucket!r} is not in 0..{key.size - 1}")
            group = group * key.size + bucket
        if group in filled:
            raise QueryError(f"the local result has group {group} twice")
        filled.add(group)
        vector[group * width : (group + 1) * width] = [_float(v) for v in row[len(keys) : len(keys) + width]]
    _check_bounds(vector, layout)
    return vector


def _outside(key: GroupKey) -> str:
    # The value is not named: with a WHERE on one patient it would be that patient's data.
    return (
        f"GROUP BY {key.name}: a value (or NULL) is outside its declared {key.describe()}; add it to the "
        f"domain in the federation schema, or declare other: true for {key.name!r} to count such rows in "
        f"an {OTHER!r} bucket"
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
        # Neither the group nor the value: with a WHERE on one patient they would be its data.
        found = layout.specs[int(outside[0]) % len(layout.specs)]
        raise QueryError(
            f"{found.func.value}({found.column or '*'}) exceeds the bound the secure sum can encode at "
            f"this node: the table has more rows than max_rows ({layout.max_rows}), or a value is NaN "
            "(values outside a column's declared bounds are clipped to them)"
        )


def element_counts(vector: Vector, layout: DenseLayout) -> Vector:
    """How many of the node's rows each element of a secure sum's vector comes from.

    A COUNT is its own; a sum takes the COUNT over the same values (``COUNT(x)`` for
    ``SUM(x)``, the complete pairs for CORR's sums) where the plan has one, else the
    group's COUNT(*) (every secure sum has a COUNT: the rewrite pass adds one).
    """
    specs = layout.specs
    per_group = vector.reshape(layout.groups, len(specs))
    counted = {(s.column, s.other): j for j, s in enumerate(specs) if s.func is AggFunc.COUNT}
    every = [j for j, s in enumerate(specs) if s.func is AggFunc.COUNT]
    columns = []
    for j, spec in enumerate(specs):
        if spec.func is AggFunc.COUNT:
            columns.append(per_group[:, j])
            continue
        source = counted.get((spec.column, spec.other), counted.get((None, None)))
        if source is not None:
            columns.append(per_group[:, source])
        else:  # no COUNT of its own values nor of the rows: the largest count bounds it from above
            columns.append(per_group[:, every].max(axis=1) if every else np.zeros(layout.groups))
    return np.stack(columns, axis=1).ravel()
