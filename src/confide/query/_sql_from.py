"""FROM and JOIN in the SQL front end: the tables a SELECT reads, as a relation and a scope of names.

Where it sits: called by :mod:`._sql` for each SELECT, before its expressions are read
(:mod:`._sql_expr` looks column names up in the :class:`Scope` made here). A table held by
several parties becomes the :class:`Concat` of one :class:`Scan` per party; a ``WITH``
query read by name is its :class:`View`'s relation; ``JOIN ... ON a.x = b.y [AND ...]``,
``USING (x)`` and cross joins become a :class:`Join`. Other joins, subqueries in FROM and
table functions are refused, naming what is supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp

from confide._errors import QueryError
from confide.query._ir import Concat, Join, Relation, Scan
from confide.query._schema import FederationSchema
from confide.query._sql_nodes import at, name_of, operands, snippet, unparen, used

__all__ = ["Scope", "Table", "View", "from_clause"]


@dataclass(frozen=True)
class View:
    """A ``WITH`` query: its relation and its output columns, read by later queries as a table."""

    relation: Relation
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table the query reads; ``name`` is what columns are qualified with (alias or table)."""

    name: str
    table: str
    columns: tuple[str, ...]

    def describe(self) -> str:
        return self.table if self.name == self.table else f"{self.table} ({self.name})"


@dataclass(frozen=True)
class Scope:
    """The tables in FROM and JOIN; ``merged`` are USING columns (one column in the join's output)."""

    tables: tuple[Table, ...]
    merged: frozenset[str] = frozenset()

    def lookup(self, node: exp.Column) -> tuple[Table, str]:
        name = name_of(node.this)
        if node.args.get("db") or node.args.get("catalog"):
            raise QueryError(f"column {snippet(node)}{at(node)}: qualify columns with a table or alias only")
        qualifier = node.args.get("table")
        tables = self.tables
        if qualifier is not None:
            tables = tuple(t for t in self.tables if t.name == name_of(qualifier))
            if not tables:
                reads = ", ".join(t.describe() for t in self.tables)
                raise QueryError(
                    f"unknown table or alias in {snippet(node)}{at(node)}; the query reads: {reads}"
                )
        found = [t for t in tables if name in t.columns]
        if not found:
            have = "; ".join(f"{t.describe()} has: {', '.join(t.columns)}" for t in tables)
            raise QueryError(f"unknown column {name!r}{at(node)}; {have}")
        if len(found) > 1 and name not in self.merged:
            both = " and ".join(t.describe() for t in found)
            qualified = " or ".join(f"{t.name}.{name}" for t in found)
            raise QueryError(
                f"column {name!r}{at(node)} is ambiguous: {both} both have it; write {qualified}"
            )
        return found[0], name

    def columns(self) -> tuple[str, ...]:
        """The joined relation's columns, in the order :class:`Join` outputs them."""
        out: list[str] = []
        for table in self.tables:
            out += [c for c in table.columns if c not in out]
        return tuple(out)


def from_clause(
    select: exp.Select, schema: FederationSchema, views: Mapping[str, View]
) -> tuple[Relation, Scope]:
    source = select.args.get("from_")
    if source is None:
        raise QueryError("SELECT without FROM is not supported: name a table of the federation")
    relation, table = _table(source.this, schema, views)
    scope = Scope((table,))
    for join in select.args.get("joins") or ():
        relation, scope = _join(relation, scope, join, schema, views)
    return relation, scope


def _table(node: exp.Expr, schema: FederationSchema, views: Mapping[str, View]) -> tuple[Relation, Table]:
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        raise QueryError(
            f"FROM {snippet(node)}{at(node)}: only the federation's tables may be read "
            "(no subqueries, VALUES or table functions)"
        )
    if node.args.get("db") or node.args.get("catalog"):
        raise QueryError(
            f"table {snippet(node)}{at(node)}: name federated tables without a schema or catalog"
        )
    if used(node) - {"this", "alias"}:
        raise QueryError(f"table {snippet(node)}{at(node)}: table options are not supported")
    name = name_of(node.this)
    alias = node.args.get("alias")
    if alias is not None and alias.args.get("columns"):
        raise QueryError(f"table {snippet(node)}{at(node)}: column aliases in FROM are not supported")
    label = name if alias is None else name_of(alias.this)
    view = views.get(name)
    if view is not None:
        return view.relation, Table(label, name, view.columns)
    if name not in schema.tables and views:
        known = ", ".join([*sorted(schema.tables), *views])
        raise QueryError(f"unknown table {name!r}{at(node)}; the federation and WITH declare: {known}")
    declared = schema.table(name)
    scans = tuple(Scan(name, party) for party in declared.parties)
    relation: Relation = scans[0] if len(scans) == 1 else Concat(scans)
    return relation, Table(label, name, tuple(declared.columns))


def _join(
    relation: Relation, scope: Scope, join: exp.Join, schema: FederationSchema, views: Mapping[str, View]
) -> tuple[Relation, Scope]:
    kind = [str(join.args.get(k) or "").upper() for k in ("method", "side", "kind") if join.args.get(k)]
    if kind not in ([], ["INNER"], ["CROSS"]) or used(join) - {"this", "on", "using", "kind"}:
        raise QueryError(
            f"{' '.join(kind) or 'this kind of'} JOIN{at(join)} is not supported: only inner equi-joins "
            "(JOIN b ON a.x = b.y) and cross joins (CROSS JOIN b, FROM a, b)"
        )
    right, table = _table(join.this, schema, views)
    if any(t.name == table.name for t in scope.tables):
        raise QueryError(f"table name {table.name!r} appears twice in FROM; give each an alias")
    joined = Scope((*scope.tables, table), scope.merged)
    on, using = join.args.get("on"), join.args.get("using")
    if using:
        pairs = tuple(_using(ident, scope, table) for ident in using)
        joined = Scope(joined.tables, scope.merged | {a for a, _ in pairs})
    elif on is not None:
        pairs = tuple(_on(condition, joined, table) for condition in operands(on, exp.And))
    else:
        pairs = ()  # a cross join: FROM a, b or CROSS JOIN b
    clash = (set(scope.columns()) & set(table.columns)) - {a for a, b in pairs if a == b}
    if clash:
        raise QueryError(
            f"JOIN {table.describe()}{at(join)}: both sides have columns {sorted(clash)}; joined "
            "columns keep their bare names, so only join keys of the same name may be shared"
        )
    return Join(relation, right, pairs), joined


def _using(ident: exp.Expr, left: Scope, right: Table) -> tuple[str, str]:
    _, name = left.lookup(exp.Column(this=ident))
    if name not in right.columns:
        raise QueryError(f"USING ({name}){at(ident)}: {right.describe()} has no column {name!r}")
    return name, name


def _on(condition: exp.Expr, scope: Scope, right: Table) -> tuple[str, str]:
    node = unparen(condition)
    sides = [unparen(node.this), unparen(node.expression)] if isinstance(node, exp.EQ) else []
    columns = [side for side in sides if isinstance(side, exp.Column)]
    if len(columns) != 2:
        raise QueryError(
            f"JOIN ... ON {snippet(condition)}{at(condition)} is not supported: only equalities between "
            "columns of the two sides, joined by AND; put other conditions in WHERE"
        )
    (t1, c1), (t2, c2) = (scope.lookup(column) for column in columns)
    if (t1 == right) != (t2 == right):
        return (c2, c1) if t1 == right else (c1, c2)
    raise QueryError(
        f"JOIN {right.describe()} ON {snippet(condition)}{at(condition)}: compare a column of "
        f"{right.describe()} with a column of the tables before it"
    )
