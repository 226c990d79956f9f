"""The SQL front end: one SELECT statement, parsed with sqlglot, built into the query IR.

Where it sits: beside :mod:`._dsl`, one of the two front ends of :mod:`confide.query`; both
build the same :mod:`._ir` tree. This module only translates: it resolves table and column
names against the :class:`FederationSchema` and refuses SQL the IR cannot express. Type
checks and privacy refusals (row-level output, MEDIAN across parties, joins across
parties) are the compiler passes' work, so a query that parses here may still be refused.

This module checks the statement and its ``WITH`` queries and builds each SELECT into
relations; :mod:`._sql_from` reads FROM and JOIN, :mod:`._sql_expr` expressions and the
aggregate calls among them, and :mod:`._sql_nodes` holds what the three share.

========================================  ==========================================================
SQL                                       IR
========================================  ==========================================================
``FROM t`` (t held by p1, p2)             ``Concat((Scan(t, p1), Scan(t, p2)))``; one party: ``Scan``
``a JOIN b ON a.x = b.y AND ...``         ``Join(a, b, on=(("x", "y"), ...))``; ``USING (x)``: ``("x", "x")``
``a CROSS JOIN b`` / ``FROM a, b``        ``Join(a, b, on=())``
``WITH s AS (SELECT ...) ... FROM s``     the ``WITH`` query's relation wherever ``s`` is read
``WHERE p``                               ``Filter(input, p)``
``x IN (a, b)`` / ``x BETWEEN a AND b``   ``x = a OR x = b`` / ``x >= a AND x <= b``
``GROUP BY g`` and/or aggregates          ``Aggregate(input, (g, ...), specs)``
``AVG(x) AS m``                           ``AggregateSpec(MEAN, "x", "m")``; unaliased ``avg_x``
``SUM(x) / COUNT(*) AS r``                internal ``__sum_x``, ``__count_rows``; ``Compute(r, ...)``
``SUM(x * 12)``                           ``Compute("__arg1", x * 12)`` below the ``Aggregate``
``HAVING p``                              ``Filter`` right above the ``Aggregate``
the select list                           ``Project`` to its names and order, where they differ
``SELECT *`` / columns, no aggregates     ``Project`` (row-level output: a later pass refuses it)
the statement                             ``Collect(relation, to)``
========================================  ==========================================================

A ``WITH`` query reads the tables and the ``WITH`` queries before it; that is how a query
aggregates over aggregates (a total over companies, HHI) or joins two aggregates (women's
and men's average pay by job): the compiler places such operators at the receiver.

Names: unquoted identifiers are folded to lower case, as PostgreSQL does; quoted ones
(``"Salary"``) are kept as written; then tables and columns are matched exactly against the
schema. ``/`` is the IR's true division, not PostgreSQL's integer division of integers.
Output and internal names beginning with ``__`` belong to the compiler.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from confide._errors import QueryError
from confide.query._ir import Aggregate, Collect, Compute, Expr, Filter, Project, Relation
from confide.query._schema import FederationSchema
from confide.query._sql_expr import Aggregates, Context, to_expr
from confide.query._sql_from import Scope, View, from_clause
from confide.query._sql_nodes import at, name_of, snippet, unparen, used

__all__ = ["parse_sql"]

_CLAUSES = frozenset({"expressions", "from_", "joins", "where", "group", "having"})
_REFUSED_CLAUSES: Mapping[str, str] = MappingProxyType(
    {
        "order": (
            "ORDER BY is not supported: results of aggregates are returned per group in the domain's order"
        ),
        "limit": "LIMIT is not supported: a query returns every group of its GROUP BY domains",
        "offset": "OFFSET is not supported: a query returns every group of its GROUP BY domains",
        "distinct": "SELECT DISTINCT is not supported: it lists row values; GROUP BY declared domains",
        "with_": "WITH inside a WITH query is not supported: list every WITH query at the top",
    }
)


def parse_sql(text: str, schema: FederationSchema, *, to: str = "researcher") -> Collect:
    """Parse one SQL SELECT over the federation's tables into the query IR.

    Parameters
    ----------
    text
        The query: a single SELECT statement (PostgreSQL syntax).
    schema
        The federation's tables, their parties and columns; names are resolved against it.
    to
        The party that receives the result.

    Returns
    -------
    Collect
        The IR, rooted at ``Collect(..., to=to)``, ready for the compiler passes.

    Raises
    ------
    QueryError
        A syntax error (with line and column), an unknown table or column, or SQL the IR
        cannot express (the message names the construct and what is supported).
    """
    if not to:
        raise QueryError("parse_sql: to must name the party that receives the result")
    statement, with_queries = _statement(text)
    views: dict[str, View] = {}
    for name, select in with_queries:
        if name in schema.tables:
            raise QueryError(f"WITH {name}: the federation has a table of that name; rename the WITH query")
        views[name] = _select(select, schema, views)
    return Collect(_select(statement, schema, views).relation, to)


def _select(select: exp.Select, schema: FederationSchema, views: Mapping[str, View]) -> View:
    relation, scope = from_clause(select, schema, views)
    where = select.args.get("where")
    if where is not None:
        relation = Filter(relation, to_expr(where.this, Context(scope, "WHERE")))
    items = _items(select)
    if select.args.get("group") or select.args.get("having") or any(map(_has_aggregate, items)):
        return _aggregate_query(select, items, relation, scope)
    return _row_query(items, relation, scope)


# -- the statement ----------------------------------------------------------------------


def _statement(text: str) -> tuple[exp.Select, list[tuple[str, exp.Select]]]:
    """The one SELECT statement, and its ``WITH`` queries by name, checked for what is supported."""
    try:
        statements = [s for s in sqlglot.parse(text, read="postgres") if s is not None]
    except ParseError as error:
        raise QueryError(_syntax_error(error)) from None
    except SqlglotError as error:
        raise QueryError(f"SQL syntax error: {error}") from None
    if len(statements) != 1:
        raise QueryError(f"{len(statements)} statements: a federated query is exactly one SELECT statement")
    statement = statements[0]
    if not isinstance(statement, exp.Select):
        kind = statement.key.upper()
        if isinstance(statement, exp.SetOperation):
            kind = "UNION/INTERSECT/EXCEPT"
        elif isinstance(statement, exp.Command):
            kind = str(statement.this).upper()
        raise QueryError(f"{kind} is not supported: a federated query is exactly one SELECT statement")
    _clauses(statement, _CLAUSES | {"with_"})
    with_queries = _with_queries(statement)
    selects = [statement, *(select for _, select in with_queries)]
    for node in statement.walk():
        if isinstance(node, exp.Query) and not any(node is select for select in selects):
            raise QueryError(
                f"subqueries are not supported{at(node)}: {snippet(node)}; "
                "give it a name in WITH, then read it by that name as a table"
            )
        if isinstance(node, exp.Window):
            raise QueryError(
                f"window functions are not supported{at(node)}: {snippet(node)}; "
                "aggregates are computed once per GROUP BY group"
            )
    return statement, with_queries


def _clauses(select: exp.Select, allowed: frozenset[str]) -> None:
    unsupported = sorted(used(select) - allowed)
    if unsupported:
        key = unsupported[0]
        default = f"{key.rstrip('_').upper()} is not supported in a federated query"
        raise QueryError(_REFUSED_CLAUSES.get(key, default))


def _with_queries(statement: exp.Select) -> list[tuple[str, exp.Select]]:
    """The statement's ``WITH`` queries, in order; each may read the tables and the ones before it."""
    with_queries = statement.args.get("with_")
    if with_queries is None:
        return []
    if used(with_queries) - {"expressions"}:
        raise QueryError("WITH RECURSIVE is not supported: each WITH query reads the ones before it")
    found: list[tuple[str, exp.Select]] = []
    for cte in with_queries.expressions:
        alias = cte.args.get("alias")
        name = name_of(alias.this)
        where = f"WITH {name}{at(cte)}"
        if alias.args.get("columns") or used(cte) - {"this", "alias"}:
            raise QueryError(f"{where}: column lists and MATERIALIZED are not supported; alias the columns")
        if not isinstance(cte.this, exp.Select):
            raise QueryError(f"{where}: a WITH query is one SELECT, not {cte.this.key.upper()}")
        if name in (n for n, _ in found):
            raise QueryError(f"{where}: a WITH query of that name exists already; rename one")
        _clauses(cte.this, _CLAUSES)
        found.append((name, cte.this))
    return found


def _syntax_error(error: ParseError) -> str:
    if not error.errors:
        return f"SQL syntax error: {error}"
    first = error.errors[0]
    token = str(first.get("highlight") or "")
    description = re.sub(r"<Token token_type: \S+, text: (.*?), line: \d+.*?>", r"'\1'", first["description"])
    description = re.sub(r"<class 'sqlglot\.[\w.]+\.(\w+)'>", r"\1", description)
    col = int(first["col"]) - len(token) + 1 if "\n" not in token else first["col"]
    near = f" near {token!r}" if token else ""
    return f"SQL syntax error at line {first['line']}, col {col}{near}: {description}"


# -- SELECT lists -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One select-list entry: the expression without alias or parentheses, its alias, its position."""

    node: exp.Expr
    alias: str | None
    position: int


def _items(select: exp.Select) -> list[_Item]:
    items = []
    for position, node in enumerate(select.expressions, start=1):
        alias = None
        if isinstance(node, exp.Alias):
            alias = name_of(node.args["alias"])
            if alias.startswith("__"):
                raise QueryError(f"alias {alias!r}{at(node)}: names beginning with '__' are the compiler's")
            node = node.this
        items.append(_Item(unparen(node), alias, position))
    return items


def _has_aggregate(item: _Item) -> bool:
    return any(isinstance(n, exp.AggFunc | exp.WithinGroup) for n in item.node.walk())


def _is_star(node: exp.Expr) -> bool:
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


def _aggregate_query(select: exp.Select, items: list[_Item], source: Relation, scope: Scope) -> View:
    group_by = _group_by(select, items, scope)
    aggregates = Aggregates(scope, group_by)
    ctx = Context(scope, "SELECT", aggregates)
    names: list[str] = []
    computes: list[tuple[str, Expr]] = []
    for item in items:
        if _is_star(item.node):
            raise QueryError(
                "SELECT * with GROUP BY or aggregates is not supported: name the groups and aggregates"
            )
        if isinstance(item.node, exp.AggFunc | exp.WithinGroup):
            names.append(aggregates.output(item.node, item.alias))
        elif isinstance(item.node, exp.Column) and item.alias in (None, name_of(item.node.this)):
            names.append(ctx.column(item.node).name)
        else:
            names.append(item.alias or f"expr_{item.position}")
            computes.append((names[-1], to_expr(item.node, ctx)))
    having = select.args.get("having")
    predicate = None if having is None else to_expr(having.this, Context(scope, "HAVING", aggregates))
    _unique(names)
    made = [s.out for s in aggregates.specs] + [name for name, _ in computes]
    for name in made:
        if name in group_by:
            raise QueryError(f"output {name!r} is also a GROUP BY column; give it another alias")
    for expr, name in aggregates.arguments.items():
        source = Compute(source, name, expr)
    relation: Relation = Aggregate(source, group_by, tuple(aggregates.specs))
    if predicate is not None:
        relation = Filter(relation, predicate)
    for name, expr in computes:
        relation = Compute(relation, name, expr)
    return View(_project(relation, (*group_by, *made), names), tuple(names))


def _group_by(select: exp.Select, items: list[_Item], scope: Scope) -> tuple[str, ...]:
    group = select.args.get("group")
    if group is None:
        return ()
    if used(group) - {"expressions"}:
        raise QueryError("GROUP BY ROLLUP/CUBE/GROUPING SETS/ALL is not supported: group by plain columns")
    names: list[str] = []
    for key in group.expressions:
        node = unparen(key)
        if isinstance(node, exp.Literal) and not node.is_string and str(node.this).isdigit():
            position = int(node.this)  # GROUP BY 1: the first select-list entry
            node = items[position - 1].node if 0 < position <= len(items) else node
        if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
            raise QueryError(
                f"GROUP BY {snippet(key)}{at(key)} is not supported: "
                "group by plain columns (GROUP BY job, age)"
            )
        _, name = scope.lookup(node)
        if name not in names:
            names.append(name)
    return tuple(names)


def _row_query(items: list[_Item], source: Relation, scope: Scope) -> View:
    ctx = Context(scope, "SELECT")
    names: list[str] = []
    relation = source
    for item in items:
        if _is_star(item.node):
            table = item.node.args.get("table") if isinstance(item.node, exp.Column) else None
            chosen = [t for t in scope.tables if table is None or t.name == name_of(table)]
            if not chosen:
                where = f"{snippet(item.node)}{at(item.node)}"
                raise QueryError(f"{where}: no table or alias of that name in FROM")
            names += Scope(tuple(chosen)).columns()
        elif isinstance(item.node, exp.Column) and item.alias in (None, name_of(item.node.this)):
            names.append(ctx.column(item.node).name)
        else:
            name = item.alias or f"expr_{item.position}"
            if name in scope.columns():
                raise QueryError(f"output {name!r} is also a column of the input; give it another alias")
            relation = Compute(relation, name, to_expr(item.node, ctx))
            names.append(name)
    _unique(names)
    return View(Project(relation, tuple(names)), tuple(names))


def _project(relation: Relation, columns: tuple[str, ...], names: list[str]) -> Relation:
    return relation if columns == tuple(names) else Project(relation, tuple(names))


def _unique(names: list[str]) -> None:
    for index, name in enumerate(names):
        if name in names[:index]:
            raise QueryError(
                f"output column {name!r} appears twice in the SELECT list; give one an alias (AS ...)"
            )
