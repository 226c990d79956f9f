"""The Conclave-style Python DSL: ``create``, ``concat``, ``aggregate`` ... building the query IR.

Where it sits: one of the two front ends of :mod:`confide.query`, beside SQL; both build
the same :mod:`._ir` tree, so the compiler passes never know which one wrote a query.
This module holds the DSL's values (:class:`Rel`, :class:`Query`), column definitions
and :func:`create`, and the checks every call makes (:class:`Site`); the operators are in
:mod:`._dsl_operators`, the aggregates in :mod:`._dsl_aggregate`.

The vocabulary is Conclave's (Volgushev et al., "Conclave: secure multi-party
computation on big data", EuroSys 2019; its ``conclave.lang``): :func:`defCol` declares a
column and the parties that own it, :func:`create` a table held by one or several
parties, every operator takes its input relation and a name for its output, and
:func:`collect` ends the program. Three things differ from Conclave:

- there is no global registry: every call returns an immutable :class:`Rel` (the IR so
  far, its columns, and the tables declared on the way), and :func:`collect` returns a
  :class:`Query` holding the IR and the :class:`FederationSchema` its ``create`` calls
  declare;
- columns carry what secure aggregation needs (``bounds``, ``categories``, ``bins``,
  ``other``), and every call checks names and types at once, so a mistake is reported
  where it is made, naming the call, the argument and what is allowed;
- :func:`join` without keys is a cross join (groups with a one-row total), and
  :func:`collect` takes ``reveal``: aggregates besides the result that the receiver may
  see, which operators combining groups at the receiver need (HHI's per-company totals).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from pydantic import ValidationError

from confide._errors import QueryError
from confide.query._ir import Collect, ColumnType, Concat, Relation, Scan
from confide.query._schema import ColumnSchema, FederationSchema, TableSchema

__all__ = [
    "Col",
    "ColumnDef",
    "Query",
    "Rel",
    "Site",
    "col",
    "create",
    "defCol",
    "merge_tables",
    "schema_difference",
]

# Table and column names end up in the SQL generated for each party's database.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TYPES: Mapping[str, ColumnType] = MappingProxyType(
    {
        "integer": ColumnType.INT,
        "int": ColumnType.INT,
        "float": ColumnType.FLOAT,
        "string": ColumnType.STR,
        "str": ColumnType.STR,
        "bool": ColumnType.BOOL,
        "boolean": ColumnType.BOOL,
    }
)


@dataclass(frozen=True)
class ColumnDef:
    """A column: its name, its type and declared domain, and the parties that own it."""

    name: str
    schema: ColumnSchema
    owners: frozenset[str] = frozenset()

    @property
    def type(self) -> ColumnType:
        """The column's type."""
        return self.schema.type


@dataclass(frozen=True)
class Col:
    """A column as the right-hand side of :func:`filter` (there a plain ``str`` is a constant)."""

    name: str


@dataclass(frozen=True)
class Rel:
    """A relation under construction: its IR, its columns, and the tables declared so far.

    ``name`` is the name the program gave it (error messages use it); ``tables`` maps each
    table a ``create`` call declared to its parties and columns (read-only).
    """

    name: str
    relation: Relation
    columns: tuple[ColumnDef, ...]
    tables: Mapping[str, TableSchema] = field(hash=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The names of the relation's columns, in order."""
        return tuple(column.name for column in self.columns)


@dataclass(frozen=True)
class Query:
    """A finished program: the IR rooted at :class:`Collect`, and the schema it declares."""

    relation: Collect
    schema: FederationSchema


def col(name: str) -> Col:
    """Name column ``name`` as the right-hand side of :func:`filter`."""
    return Col(name)


def defCol(  # Conclave's name, kept so that Conclave programs read the same
    name: str,
    typ: str | ColumnType,
    owners: str | Iterable[str] | None = None,
    *,
    bounds: Sequence[float] | None = None,
    categories: Sequence[str | int] | None = None,
    bins: Sequence[float] | None = None,
    other: bool = False,
) -> ColumnDef:
    """Declare a column for :func:`create`.

    Parameters
    ----------
    name
        The column's name (an identifier).
    typ
        ``"INTEGER"``/``"int"``, ``"FLOAT"``/``"float"``, ``"STRING"``/``"str"`` or
        ``"BOOL"``/``"bool"`` (any case).
    owners
        The parties that own the column (Conclave's trust set); none by default.
    bounds
        ``(lo, hi)`` of a numeric column; secure sums need them.
    categories
        The values of a ``str`` or ``int`` column that is a GROUP BY key.
    bins
        Increasing edges that bin a numeric column used as a GROUP BY key.
    other
        Whether values outside ``categories`` or ``bins`` form an "other" group.

    Returns
    -------
    ColumnDef
        The column.

    Raises
    ------
    QueryError
        A bad name, type or owner, or an inconsistent domain.
    """
    site = Site("defCol", name)
    site.identifier("name", name)
    column_type = _TYPES.get(typ.lower()) if isinstance(typ, str) else None
    if column_type is None:
        raise site.error(f"typ {typ!r} is not a column type; use INTEGER, FLOAT, STRING or BOOL")
    owner_ids = frozenset(site.parties("owners", owners)) if owners is not None else frozenset()
    _check_domain(site, column_type, categories, bins)
    try:
        schema = ColumnSchema(
            type=column_type,
            bounds=None if bounds is None else tuple(bounds),
            categories=None if categories is None else tuple(categories),
            bins=None if bins is None else tuple(bins),
            other=other,
        )
    except ValidationError as exc:
        raise site.error(_problems(exc)) from None
    return ColumnDef(name, schema, owner_ids)


def create(name: str, columns: Sequence[ColumnDef], at: str | Iterable[str]) -> Rel:
    """Declare table ``name`` with ``columns``, held by the party or parties ``at``.

    A table at several parties is the :class:`Concat` of one :class:`Scan` per party, in
    sorted party order.

    Parameters
    ----------
    name
        The table's name (an identifier), the same at every party that holds it.
    columns
        Its columns, from :func:`defCol`.
    at
        A party id, or a set or list of them.

    Returns
    -------
    Rel
        The table.

    Raises
    ------
    QueryError
        A bad name, no or repeated columns, no or repeated parties.
    """
    site = Site("create", name)
    site.identifier("name", name)
    parties = site.parties("at", at)
    if not isinstance(columns, Sequence) or not columns or not all(isinstance(c, ColumnDef) for c in columns):
        raise site.error(f"columns must be a non-empty list of defCol(...) columns, not {columns!r}")
    site.unique("columns", [column.name for column in columns])
    scans = tuple(Scan(name, party) for party in parties)
    relation: Relation = scans[0] if len(scans) == 1 else Concat(scans)
    table = TableSchema(parties=parties, columns={column.name: column.schema for column in columns})
    return Rel(name, relation, tuple(columns), MappingProxyType({name: table}))


# -- checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """Where in the program a check runs: the call and the name it was given."""

    call: str
    name: str

    def error(self, problem: str) -> QueryError:
        return QueryError(f"{self.call} {self.name!r}: {problem}")

    def identifier(self, arg: str, value: object) -> str:
        if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
            raise self.error(f"{arg} must be an identifier (letters, digits, _), not {value!r}")
        return value

    def parties(self, arg: str, value: str | Iterable[str]) -> tuple[str, ...]:
        items: list[object] = (
            list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
        )
        if not items or not all(isinstance(p, str) and p for p in items):
            raise self.error(f"{arg} must be a party id or a set of them (non-empty strings), not {value!r}")
        self.unique(arg, [str(p) for p in items])
        return tuple(sorted(str(p) for p in items))

    def unique(self, arg: str, names: Sequence[str], hint: str = "") -> None:
        repeated = sorted({item for item in names if names.count(item) > 1})
        if repeated:
            raise self.error(f"{arg} name {', '.join(map(repr, repeated))} more than once{hint}")

    def names(self, arg: str, value: Sequence[str], *, allow_empty: bool = False) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.error(f"{arg} must be a list of column names, not {value!r}")
        if not value and not allow_empty:
            raise self.error(f"{arg} must name at least one column")
        self.unique(arg, value)
        return tuple(value)

    def column(self, rel: Rel, arg: str, column: object) -> ColumnDef:
        for found in rel.columns:
            if found.name == column:
                return found
        known = ", ".join(rel.column_names)
        raise self.error(f"{arg}: {column!r} is not a column of {rel.name!r}; its columns are: {known}")


def _check_domain(
    site: Site, typ: ColumnType, categories: Sequence[str | int] | None, bins: Sequence[float] | None
) -> None:
    if categories is not None:
        wanted = {ColumnType.STR: str, ColumnType.INT: int}.get(typ)
        if wanted is None or isinstance(categories, str):
            raise site.error(
                f"categories must be a list of values of a str or int column, not {categories!r}"
            )
        if not all(isinstance(c, wanted) and not isinstance(c, bool) for c in categories):
            raise site.error(f"categories of a {typ} column must be {typ} values, not {categories!r}")
    if bins is not None and not typ.numeric:
        raise site.error(f"bins apply to numeric columns, not to a {typ} column; use categories")


def _problems(exc: ValidationError) -> str:
    found = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"]))
        problem = error["msg"].removeprefix("Value error, ")
        found.append(f"{where}: {problem}" if where else problem)
    return "; ".join(found)


# -- declared tables ----------------------------------------------------------------------


def schema_difference(a: Mapping[str, ColumnSchema], b: Mapping[str, ColumnSchema]) -> str | None:
    """How two tables' columns differ (names and order, then each declaration), or None."""
    if list(a) != list(b):
        return f"columns ({', '.join(a)}) versus ({', '.join(b)})"
    for column, schema in a.items():
        if schema != b[column]:
            return f"column {column!r} is {_render(schema)} versus {_render(b[column])}"
    return None


def _render(schema: ColumnSchema) -> str:
    declared = schema.model_dump(mode="json", exclude_defaults=True)
    return "(" + ", ".join(f"{key}={value!r}" for key, value in declared.items()) + ")"


def merge_tables(site: Site, rels: Sequence[Rel]) -> Mapping[str, TableSchema]:
    """The tables ``rels`` declare, one table's parties joined; refused if declared differently."""
    merged: dict[str, TableSchema] = {}
    for rel in rels:
        for table, declared in rel.tables.items():
            known = merged.get(table)
            if known is None:
                merged[table] = declared
                continue
            problem = schema_difference(known.columns, declared.columns)
            if problem:
                raise site.error(
                    f"table {table!r} is declared differently at {', '.join(known.parties)} and at "
                    f"{', '.join(declared.parties)}: {problem}; every party must declare the same columns"
                )
            parties = tuple(sorted(set(known.parties) | set(declared.parties)))
            merged[table] = TableSchema(parties=parties, columns=dict(known.columns))
    return MappingProxyType(merged)
