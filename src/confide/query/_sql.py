"""The SQL front end: one SELECT statement, parsed with sqlglot, built into the query IR.

Where it sits: beside :mod:`._dsl`, one of the two front ends of :mod:`confide.query`; both
build the same :mod:`._ir` tree. This module only translates: it resolves table and column
names against the :class:`FederationSchema` and refuses SQL the IR cannot express. Type
checks and privacy refusals (row-level output, MEDIAN across parties, joins across
parties) are the compiler passes' work, so a query that parses here may still be refused.

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from confide._errors import QueryError
from confide.query._ir import (
    AggFunc,
    Aggregate,
    AggregateSpec,
    BinaryOp,
    BoolExpr,
    BoolOp,
    Collect,
    ColumnRef,
    Compare,
    CompareOp,
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
)
from confide.query._schema import FederationSchema

__all__ = ["parse_sql"]

_EXPRESSIONS = (
    "supported: columns, numbers, strings, TRUE/FALSE/NULL, + - * /, = != <> < <= > >=, "
    "AND/OR/NOT, IN (...), BETWEEN ... AND ..."
)
_AGGREGATES_SUPPORTED = (
    "supported: COUNT(*), COUNT(x), COUNT(DISTINCT x), SUM, AVG, VARIANCE/VAR_SAMP, VAR_POP, "
    "STDDEV/STDDEV_SAMP, STDDEV_POP, CORR(x, y), MEDIAN, PERCENTILE_CONT(0.5), MIN, MAX"
)
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
_ARITHMETIC: Mapping[type[exp.Expr], str] = MappingProxyType(
    {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}
)
_COMPARISONS: Mapping[type[exp.Expr], CompareOp] = MappingProxyType(
    {
        exp.EQ: CompareOp.EQ,
        exp.NEQ: CompareOp.NE,
        exp.LT: CompareOp.LT,
        exp.LTE: CompareOp.LE,
        exp.GT: CompareOp.GT,
        exp.GTE: CompareOp.GE,
    }
)
# sqlglot's class -> the IR's function and the name an unaliased output gets (``avg_salary``).
_FUNCTIONS: Mapping[type[exp.Expr], tuple[AggFunc, str]] = MappingProxyType(
    {
        exp.Sum: (AggFunc.SUM, "sum"),
        exp.Avg: (AggFunc.MEAN, "avg"),
        exp.Variance: (AggFunc.VAR, "variance"),  # also VAR_SAMP
        exp.VariancePop: (AggFunc.VAR_POP, "var_pop"),
        exp.Stddev: (AggFunc.STD, "stddev"),
        exp.StddevSamp: (AggFunc.STD, "stddev_samp"),
        exp.StddevPop: (AggFunc.STD_POP, "stddev_pop"),
        exp.Corr: (AggFunc.CORR, "corr"),
        exp.Median: (AggFunc.MEDIAN, "median"),
        exp.Min: (AggFunc.MIN, "min"),
        exp.Max: (AggFunc.MAX, "max"),
    }
)
_NAMES: Mapping[type[exp.Expr], str] = MappingProxyType(
    {
        exp.Like: "LIKE",
        exp.ILike: "ILIKE",
        exp.Is: "IS [NOT] NULL (the IR has no test for missing values)",
        exp.Case: "CASE",
        exp.Cast: "CAST",
        exp.Mod: "% (modulo)",
        exp.DPipe: "|| (string concatenation)",
        exp.Star: "*",
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
    views: dict[str, _View] = {}
    for name, select in with_queries:
        if name in schema.tables:
            raise QueryError(f"WITH {name}: the federation has a table of that name; rename the WITH query")
        views[name] = _select(select, schema, views)
    return Collect(_select(statement, schema, views).relation, to)


@dataclass(frozen=True)
class _View:
    """A ``WITH`` query: its relation and its output columns, read by later queries as a table."""

    relation: Relation
    columns: tuple[str, ...]


def _select(select: exp.Select, schema: FederationSchema, views: Mapping[str, _View]) -> _View:
    relation, scope = _from(select, schema, views)
    where = select.args.get("where")
    if where is not None:
        relation = Filter(relation, _expr(where.this, _Context(scope, "WHERE")))
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
                f"subqueries are not supported{_at(node)}: {_sql(node)}; "
                "give it a name in WITH, then read it by that name as a table"
            )
        if isinstance(node, exp.Window):
            raise QueryError(
                f"window functions are not supported{_at(node)}: {_sql(node)}; "
                "aggregates are computed once per GROUP BY group"
            )
    return statement, with_queries


def _clauses(select: exp.Select, allowed: frozenset[str]) -> None:
    unsupported = sorted(_used(select) - allowed)
    if unsupported:
        key = unsupported[0]
        default = f"{key.rstrip('_').upper()} is not supported in a federated query"
        raise QueryError(_REFUSED_CLAUSES.get(key, default))


def _with_queries(statement: exp.Select) -> list[tuple[str, exp.Select]]:
    """The statement's ``WITH`` queries, in order; each may read the tables and the ones before it."""
    with_queries = statement.args.get("with_")
    if with_queries is None:
        return []
    if _used(with_queries) - {"expressions"}:
        raise QueryError("WITH RECURSIVE is not supported: each WITH query reads the ones before it")
    found: list[tuple[str, exp.Select]] = []
    for cte in with_queries.expressions:
        alias = cte.args.get("alias")
        name = _name(alias.this)
        where = f"WITH {name}{_at(cte)}"
        if alias.args.get("columns") or _used(cte) - {"this", "alias"}:
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


# -- FROM and JOIN ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A table the query reads; ``name`` is what columns are qualified with (alias or table)."""

    name: str
    table: str
    columns: tuple[str, ...]

    def describe(self) -> str:
        return self.table if self.name == self.table else f"{self.table} ({self.name})"


@dataclass(frozen=True)
class _Scope:
    """The tables in FROM and JOIN; ``merged`` are USING columns (one column in the join's output)."""

    tables: tuple[_Table, ...]
    merged: frozenset[str] = frozenset()

    def lookup(self, node: exp.Column) -> tuple[_Table, str]:
        name = _name(node.this)
        if node.args.get("db") or node.args.get("catalog"):
            raise QueryError(f"column {_sql(node)}{_at(node)}: qualify columns with a table or alias only")
        qualifier = node.args.get("table")
        tables = self.tables
        if qualifier is not None:
            tables = tuple(t for t in self.tables if t.name == _name(qualifier))
            if not tables:
                reads = ", ".join(t.describe() for t in self.tables)
                raise QueryError(
                    f"unknown table or alias in {_sql(node)}{_at(node)}; the query reads: {reads}"
                )
        found = [t for t in tables if name in t.columns]
        if not found:
            have = "; ".join(f"{t.describe()} has: {', '.join(t.columns)}" for t in tables)
            raise QueryError(f"unknown column {name!r}{_at(node)}; {have}")
        if len(found) > 1 and name not in self.merged:
            both = " and ".join(t.describe() for t in found)
            qualified = " or ".join(f"{t.name}.{name}" for t in found)
            raise QueryError(
                f"column {name!r}{_at(node)} is ambiguous: {both} both have it; write {qualified}"
            )
        return found[0], name

    def columns(self) -> tuple[str, ...]:
        """The joined relation's columns, in the order :class:`Join` outputs them."""
        out: list[str] = []
        for table in self.tables:
            out += [c for c in table.columns if c not in out]
        return tuple(out)


def _from(
    select: exp.Select, schema: FederationSchema, views: Mapping[str, _View]
) -> tuple[Relation, _Scope]:
    source = select.args.get("from_")
    if source is None:
        raise QueryError("SELECT without FROM is not supported: name a table of the federation")
    relation, table = _table(source.this, schema, views)
    scope = _Scope((table,))
    for join in select.args.get("joins") or ():
        relation, scope = _join(relation, scope, join, schema, views)
    return relation, scope


def _table(node: exp.Expr, schema: FederationSchema, views: Mapping[str, _View]) -> tuple[Relation, _Table]:
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        raise QueryError(
            f"FROM {_sql(node)}{_at(node)}: only the federation's tables may be read "
            "(no subqueries, VALUES or table functions)"
        )
    if node.args.get("db") or node.args.get("catalog"):
        raise QueryError(f"table {_sql(node)}{_at(node)}: name federated tables without a schema or catalog")
    if _used(node) - {"this", "alias"}:
        raise QueryError(f"table {_sql(node)}{_at(node)}: table options are not supported")
    name = _name(node.this)
    alias = node.args.get("alias")
    if alias is not None and alias.args.get("columns"):
        raise QueryError(f"table {_sql(node)}{_at(node)}: column aliases in FROM are not supported")
    label = name if alias is None else _name(alias.this)
    view = views.get(name)
    if view is not None:
        return view.relation, _Table(label, name, view.columns)
    if name not in schema.tables and views:
        known = ", ".join([*sorted(schema.tables), *views])
        raise QueryError(f"unknown table {name!r}{_at(node)}; the federation and WITH declare: {known}")
    declared = schema.table(name)
    scans = tuple(Scan(name, party) for party in declared.parties)
    relation: Relation = scans[0] if len(scans) == 1 else Concat(scans)
    return relation, _Table(label, name, tuple(declared.columns))


def _join(
    relation: Relation, scope: _Scope, join: exp.Join, schema: FederationSchema, views: Mapping[str, _View]
) -> tuple[Relation, _Scope]:
    kind = [str(join.args.get(k) or "").upper() for k in ("method", "side", "kind") if join.args.get(k)]
    if kind not in ([], ["INNER"], ["CROSS"]) or _used(join) - {"this", "on", "using", "kind"}:
        raise QueryError(
            f"{' '.join(kind) or 'this kind of'} JOIN{_at(join)} is not supported: only inner equi-joins "
            "(JOIN b ON a.x = b.y) and cross joins (CROSS JOIN b, FROM a, b)"
        )
    right, table = _table(join.this, schema, views)
    if any(t.name == table.name for t in scope.tables):
        raise QueryError(f"table name {table.name!r} appears twice in FROM; give each an alias")
    joined = _Scope((*scope.tables, table), scope.merged)
    on, using = join.args.get("on"), join.args.get("using")
    if using:
        pairs = tuple(_using(ident, scope, table) for ident in using)
        joined = _Scope(joined.tables, scope.merged | {a for a, _ in pairs})
    elif on is not None:
        pairs = tuple(_on(condition, joined, table) for condition in _operands(on, exp.And))
    else:
        pairs = ()  # a cross join: FROM a, b or CROSS JOIN b
    clash = (set(scope.columns()) & set(table.columns)) - {a for a, b in pairs if a == b}
    if clash:
        raise QueryError(
            f"JOIN {table.describe()}{_at(join)}: both sides have columns {sorted(clash)}; joined "
            "columns keep their bare names, so only join keys of the same name may be shared"
        )
    return Join(relation, right, pairs), joined


def _using(ident: exp.Expr, left: _Scope, right: _Table) -> tuple[str, str]:
    _, name = left.lookup(exp.Column(this=ident))
    if name not in right.columns:
        raise QueryError(f"USING ({name}){_at(ident)}: {right.describe()} has no column {name!r}")
    return name, name


def _on(condition: exp.Expr, scope: _Scope, right: _Table) -> tuple[str, str]:
    node = _unparen(condition)
    sides = [_unparen(node.this), _unparen(node.expression)] if isinstance(node, exp.EQ) else []
    columns = [side for side in sides if isinstance(side, exp.Column)]
    if len(columns) != 2:
        raise QueryError(
            f"JOIN ... ON {_sql(condition)}{_at(condition)} is not supported: only equalities between "
            "columns of the two sides, joined by AND; put other conditions in WHERE"
        )
    (t1, c1), (t2, c2) = (scope.lookup(column) for column in columns)
    if (t1 == right) != (t2 == right):
        return (c2, c1) if t1 == right else (c1, c2)
    raise QueryError(
        f"JOIN {right.describe()} ON {_sql(condition)}{_at(condition)}: compare a column of "
        f"{right.describe()} with a column of the tables before it"
    )


# -- expressions ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """Where an expression stands: its scope, its clause (for messages), and whether aggregates may appear."""

    scope: _Scope
    clause: str
    aggregates: _Aggregates | None = None

    def column(self, node: exp.Column) -> ColumnRef:
        _, name = self.scope.lookup(node)
        if self.aggregates is not None and name not in self.aggregates.group_by:
            raise QueryError(
                f"column {name!r}{_at(node)} in {self.clause} is neither in GROUP BY nor inside an "
                f"aggregate: group by it, or aggregate it (e.g. AVG({name}))"
            )
        return ColumnRef(name)

    def aggregate(self, node: exp.Expr) -> ColumnRef:
        if self.aggregates is None:
            hint = "; filter groups with HAVING" if self.clause == "WHERE" else ""
            raise QueryError(f"aggregate {_sql(node)}{_at(node)} is not allowed in {self.clause}{hint}")
        return ColumnRef(self.aggregates.reference(node))


def _expr(node: exp.Expr, ctx: _Context) -> Expr:
    match node:
        case exp.Paren():
            return _expr(node.this, ctx)
        case exp.Column() if not isinstance(node.this, exp.Star):
            return ctx.column(node)
        case exp.Literal() | exp.Boolean() | exp.Null():
            return Literal(_value(node))
        case exp.Neg():
            inner = _expr(node.this, ctx)
            number = inner.value if isinstance(inner, Literal) else None
            if isinstance(number, int | float) and not isinstance(number, bool):
                return Literal(-number)
            return BinaryOp("-", Literal(0), inner)
        case exp.And() | exp.Or():
            op = BoolOp.AND if isinstance(node, exp.And) else BoolOp.OR
            return BoolExpr(op, tuple(_expr(n, ctx) for n in _operands(node, type(node))))
        case exp.Not():
            return Not(_expr(node.this, ctx))
        case exp.In() if not node.args.get("query") and not node.args.get("unnest") and node.expressions:
            left = _expr(node.this, ctx)
            equal = tuple(Compare(CompareOp.EQ, left, _expr(n, ctx)) for n in node.expressions)
            return equal[0] if len(equal) == 1 else BoolExpr(BoolOp.OR, equal)
        case exp.Between() if not node.args.get("symmetric"):
            value = _expr(node.this, ctx)
            low, high = _expr(node.args["low"], ctx), _expr(node.args["high"], ctx)
            return BoolExpr(
                BoolOp.AND, (Compare(CompareOp.GE, value, low), Compare(CompareOp.LE, value, high))
            )
        case exp.AggFunc() | exp.WithinGroup():
            return ctx.aggregate(node)
    if type(node) in _ARITHMETIC:
        return BinaryOp(_ARITHMETIC[type(node)], _expr(node.this, ctx), _expr(node.expression, ctx))
    if type(node) in _COMPARISONS:
        return Compare(_COMPARISONS[type(node)], _expr(node.this, ctx), _expr(node.expression, ctx))
    what = _NAMES.get(type(node)) or (
        f"function {node.name.upper() if isinstance(node, exp.Anonymous) else node.sql_name()}()"
        if isinstance(node, exp.Func)
        else node.key.upper()
    )
    raise QueryError(f"{what} is not supported in {ctx.clause} ({_sql(node)}{_at(node)}); {_EXPRESSIONS}")


def _value(node: exp.Expr) -> int | float | str | bool | None:
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if node.is_string:
        return str(node.this)
    try:
        return int(node.this)
    except ValueError:
        pass
    try:
        return float(node.this)
    except ValueError:
        raise QueryError(f"number {node.this!r}{_at(node)} is not supported; {_EXPRESSIONS}") from None


def _operands(node: exp.Expr, kind: type[exp.Expr]) -> Iterator[exp.Expr]:
    """The operands of ``a AND (b AND c)`` (for ``kind`` And) as ``a, b, c``."""
    inner = _unparen(node)
    if not isinstance(inner, kind):
        yield node
        return
    for side in (inner.this, inner.expression):
        yield from _operands(side, kind)


# -- aggregates -------------------------------------------------------------------------


@dataclass
class _Aggregates:
    """The aggregates a query needs, collected while its SELECT list and HAVING are read."""

    scope: _Scope
    group_by: tuple[str, ...]
    specs: list[AggregateSpec] = field(default_factory=list)
    arguments: dict[Expr, str] = field(default_factory=dict)  # per-row Computes aggregated over

    def output(self, node: exp.Expr, alias: str | None) -> str:
        """A select-list aggregate: its own spec, named by the alias or ``avg_salary``."""
        func, column, other, default = self._parts(node)
        self.specs.append(AggregateSpec(func, column, alias or default, other))
        return alias or default

    def reference(self, node: exp.Expr) -> str:
        """An aggregate inside an expression: an existing equal spec, or an internal one."""
        func, column, other, _ = self._parts(node)
        for spec in self.specs:
            if (spec.func, spec.column, spec.other) == (func, column, other):
                return spec.out
        # The name rewrite_aggregates gives the sums it needs: one name, one spec.
        name = f"__{func.value}_{column or 'rows'}" + (f"_{other}" if other else "")
        self.specs.append(AggregateSpec(func, column, name, other))
        return name

    def _parts(self, node: exp.Expr) -> tuple[AggFunc, str | None, str | None, str]:
        func, base, args = _call(node)
        ctx = _Context(self.scope, f"the argument of {_sql(node)}")
        columns = [None if a is None else self._argument(_expr(a, ctx)) for a in args]
        plain = [c for c in columns if c is not None and not c.startswith("__")]
        default = "_".join((base, *plain)) if len(plain) == len(args) - columns.count(None) else base
        return func, columns[0], columns[1] if len(columns) > 1 else None, default

    def _argument(self, expr: Expr) -> str:
        if isinstance(expr, ColumnRef):
            return expr.name
        return self.arguments.setdefault(expr, f"__arg{len(self.arguments) + 1}")


def _call(node: exp.Expr) -> tuple[AggFunc, str, list[exp.Expr | None]]:
    """The function, its default output name, and its arguments (None for COUNT's ``*``)."""
    if isinstance(node, exp.WithinGroup):  # PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY x)
        order = node.expression
        keys = order.expressions if isinstance(order, exp.Order) else []
        if isinstance(node.this, exp.PercentileCont) and len(keys) == 1 and not keys[0].args.get("desc"):
            _median(node.this.this, node)
            return AggFunc.MEDIAN, "median", [keys[0].this]
    elif isinstance(node, exp.PercentileCont) and node.expression is not None:  # PERCENTILE_CONT(x, 0.5)
        _median(node.expression, node)
        return AggFunc.MEDIAN, "median", [node.this]
    elif isinstance(node, exp.Count) and node.this is not None and _used(node) <= {"this", "big_int"}:
        arg = node.this
        if isinstance(arg, exp.Star) or (isinstance(arg, exp.Literal) and not arg.is_string):
            return AggFunc.COUNT, "count", [None]  # COUNT(1) counts rows too
        if not isinstance(arg, exp.Distinct):
            return AggFunc.COUNT, "count", [arg]
        if len(arg.expressions) == 1 and _used(arg) == {"expressions"}:
            return AggFunc.COUNT_DISTINCT, "count_distinct", [arg.expressions[0]]
    elif type(node) in _FUNCTIONS and not isinstance(node.this, exp.Distinct):
        func, base = _FUNCTIONS[type(node)]
        allowed = {"this", "expression"} if func is AggFunc.CORR else {"this"}
        args = [node.this, node.expression] if func is AggFunc.CORR else [node.this]
        if all(a is not None for a in args) and _used(node) <= allowed:
            return func, base, args
    raise QueryError(f"aggregate {_sql(node)}{_at(node)} is not supported; {_AGGREGATES_SUPPORTED}")


def _median(fraction: exp.Expr, node: exp.Expr) -> None:
    if not (isinstance(fraction, exp.Literal) and not fraction.is_string and float(fraction.this) == 0.5):
        raise QueryError(
            f"{_sql(node)}{_at(node)}: only PERCENTILE_CONT(0.5), the median, is supported; "
            "stats.histogram gives approximate quantiles"
        )


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
            alias = _name(node.args["alias"])
            if alias.startswith("__"):
                raise QueryError(f"alias {alias!r}{_at(node)}: names beginning with '__' are the compiler's")
            node = node.this
        items.append(_Item(_unparen(node), alias, position))
    return items


def _has_aggregate(item: _Item) -> bool:
    return any(isinstance(n, exp.AggFunc | exp.WithinGroup) for n in item.node.walk())


def _is_star(node: exp.Expr) -> bool:
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


def _aggregate_query(select: exp.Select, items: list[_Item], source: Relation, scope: _Scope) -> _View:
    group_by = _group_by(select, items, scope)
    aggregates = _Aggregates(scope, group_by)
    ctx = _Context(scope, "SELECT", aggregates)
    names: list[str] = []
    computes: list[tuple[str, Expr]] = []
    for item in items:
        if _is_star(item.node):
            raise QueryError(
                "SELECT * with GROUP BY or aggregates is not supported: name the groups and aggregates"
            )
        if isinstance(item.node, exp.AggFunc | exp.WithinGroup):
            names.append(aggregates.output(item.node, item.alias))
        elif isinstance(item.node, exp.Column) and item.alias in (None, _name(item.node.this)):
            names.append(ctx.column(item.node).name)
        else:
            names.append(item.alias or f"expr_{item.position}")
            computes.append((names[-1], _expr(item.node, ctx)))
    having = select.args.get("having")
    predicate = None if having is None else _expr(having.this, _Context(scope, "HAVING", aggregates))
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
    return _View(_project(relation, (*group_by, *made), names), tuple(names))


def _group_by(select: exp.Select, items: list[_Item], scope: _Scope) -> tuple[str, ...]:
    group = select.args.get("group")
    if group is None:
        return ()
    if _used(group) - {"expressions"}:
        raise QueryError("GROUP BY ROLLUP/CUBE/GROUPING SETS/ALL is not supported: group by plain columns")
    names: list[str] = []
    for key in group.expressions:
        node = _unparen(key)
        if isinstance(node, exp.Literal) and not node.is_string and str(node.this).isdigit():
            position = int(node.this)  # GROUP BY 1: the first select-list entry
            node = items[position - 1].node if 0 < position <= len(items) else node
        if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
            raise QueryError(
                f"GROUP BY {_sql(key)}{_at(key)} is not supported: group by plain columns (GROUP BY job, age)"
            )
        _, name = scope.lookup(node)
        if name not in names:
            names.append(name)
    return tuple(names)


def _row_query(items: list[_Item], source: Relation, scope: _Scope) -> _View:
    ctx = _Context(scope, "SELECT")
    names: list[str] = []
    relation = source
    for item in items:
        if _is_star(item.node):
            table = item.node.args.get("table") if isinstance(item.node, exp.Column) else None
            chosen = [t for t in scope.tables if table is None or t.name == _name(table)]
            if not chosen:
                raise QueryError(f"{_sql(item.node)}{_at(item.node)}: no table or alias of that name in FROM")
            names += _Scope(tuple(chosen)).columns()
        elif isinstance(item.node, exp.Column) and item.alias in (None, _name(item.node.this)):
            names.append(ctx.column(item.node).name)
        else:
            name = item.alias or f"expr_{item.position}"
            if name in scope.columns():
                raise QueryError(f"output {name!r} is also a column of the input; give it another alias")
            relation = Compute(relation, name, _expr(item.node, ctx))
            names.append(name)
    _unique(names)
    return _View(Project(relation, tuple(names)), tuple(names))


def _project(relation: Relation, columns: tuple[str, ...], names: list[str]) -> Relation:
    return relation if columns == tuple(names) else Project(relation, tuple(names))


def _unique(names: list[str]) -> None:
    for index, name in enumerate(names):
        if name in names[:index]:
            raise QueryError(
                f"output column {name!r} appears twice in the SELECT list; give one an alias (AS ...)"
            )


# -- small helpers ----------------------------------------------------------------------


def _used(node: exp.Expr) -> set[str]:
    """The arguments ``node`` sets (sqlglot keeps unset ones as None or False)."""
    return {key for key, value in node.args.items() if value}


def _name(identifier: exp.Expr) -> str:
    """An identifier as the schema spells it: folded to lower case unless quoted."""
    text = str(identifier.this)
    return text if identifier.args.get("quoted") else text.lower()


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _sql(node: exp.Expr) -> str:
    text = node.sql(dialect="postgres")
    return text if len(text) <= 60 else text[:57] + "..."


def _at(node: exp.Expr) -> str:
    """`` at line L, col C``: where ``node``'s first token starts, when sqlglot recorded it."""
    tokens = [n.meta for n in node.walk() if "line" in n.meta and "start" in n.meta]
    if not tokens:
        return ""
    first = min(tokens, key=lambda meta: int(meta["start"]))
    return f" at line {first['line']}, col {int(first['col']) - (int(first['end']) - int(first['start']))}"
