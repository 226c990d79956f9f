"""A node's tables (CSV and Parquet files, tables in a database), as algorithms see them.

:class:`LocalData` implements the algorithms' ``DataContext``:

- ``table(name)`` reads the declared columns into Arrow, checked against their declared
  types: files with Arrow (cached per worker process, re-read when the file changes), a
  database table with one SELECT (:mod:`confide.node._database`; never cached, the
  database changes without telling);
- ``source(name)`` gives the SQL that reads the declared columns where the table lives, for
  steps that push SQL down (``query.sql``): a DuckDB scan of the file, projected and cast
  to the declared types, or a SELECT in the database's own dialect;
- ``run_sql(sql, tables)`` runs one SELECT in the database those tables live in;
- ``min_count`` and ``allows_extremes(table)`` give a step the node's disclosure rules
  (from its policy), for steps that release per-node figures (``stats.summary``).

It also records which declared tables a step reads through ``table``, ``source`` and
``run_sql`` (:meth:`LocalData.start_step`, :attr:`LocalData.tables_read`): the node checks
what may leave against those tables' policy.

A column that is missing, or whose values do not convert to the declared type, is an
error naming the table; the researcher gets the message, never the data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlglot import exp

from confide._errors import AlgorithmError, ConfideError
from confide.algorithms import TableSource
from confide.node import _database
from confide.node._config import ColumnType, DataSourceConfig, SourceFormat, TrainingDataConfig
from confide.node._policy import Policy

if TYPE_CHECKING:
    from confide.learning import TrainingSplit

__all__ = ["LocalData"]

log = logging.getLogger("confide.node.data")

_ARROW = {
    ColumnType.INT: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.STR: pa.string(),
    ColumnType.BOOL: pa.bool_(),
}
_DUCKDB = {
    ColumnType.INT: "BIGINT",
    ColumnType.FLOAT: "DOUBLE",
    ColumnType.STR: "VARCHAR",
    ColumnType.BOOL: "BOOLEAN",
}
_DUCKDB_INTEGERS = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
}  # fmt: skip


class LocalData:
    """The node's tables, loaded lazily; implements the algorithms' ``DataContext``."""

    def __init__(
        self,
        sources: Sequence[DataSourceConfig],
        training: Sequence[TrainingDataConfig] = (),
        *,
        node_id: str = "",
        policy: Policy | None = None,
        row_secret: bytes | None = None,
    ) -> None:
        self._node_id = node_id
        self._policy = policy or Policy()
        # Keys rows by their identifier in the release record; the node passes one stable across
        # restarts (row_key_secret), a fresh one only makes the record forget across restarts.
        self._row_hash_key = hashlib.sha256(b"confide row keys" + (row_secret or os.urandom(32))).digest()
        self._keys_cache: dict[str, tuple[float, npt.NDArray[np.uint64]]] = {}
        self._read: set[str] = set()  # the declared tables the current step has read
        self._sources = {s.name: s for s in sources}
        self._selects: dict[str, tuple[float, str]] = {}  # by table: the file's mtime, its SELECT
        self._cache: dict[str, tuple[float, pa.Table]] = {}
        self._training = {t.name: t for t in training}
        self._training_cache: dict[str, tuple[tuple[float, ...], TrainingSplit]] = {}
        self._training_lock = threading.Lock()  # a step and prepare_training() never read a set twice

    @property
    def node_id(self) -> str:
        """The node these tables belong to."""
        if not self._node_id:
            raise AlgorithmError("this step needs to know its node, and the worker was not told")
        return self._node_id

    @property
    def min_count(self) -> int:
        """The policy's smallest number of this node's rows a released figure may cover."""
        return self._policy.min_count

    def allows_extremes(self, table: str) -> bool:
        """Whether the policy lets a per-node minimum and maximum of ``table`` leave the node."""
        return self._policy.for_table(table).allow_extremes

    def start_step(self) -> None:
        """Forget the tables read so far: a new step begins (the worker calls it)."""
        self._read = set()

    @property
    def tables_read(self) -> tuple[str, ...]:
        """The declared tables read since :meth:`start_step`, sorted (training data not included)."""
        return tuple(sorted(self._read))

    def training_data(self, name: str) -> TrainingSplit:
        """Training data set ``name``: its training and held-out parts (cached while its files stay)."""
        from confide.node._training import load_training_data, stamp

        config = self._training.get(name)
        if config is None:
            offered = ", ".join(sorted(self._training)) or "none"
            raise AlgorithmError(f"this node has no training data {name!r}; it offers: {offered}")
        with self._training_lock:
            mtimes = stamp(config)
            cached = self._training_cache.get(name)
            if cached is not None and cached[0] == mtimes:
                return cached[1]
            split = load_training_data(config)
            self._training_cache[name] = (mtimes, split)
            return split

    def prepare_training(self) -> list[str]:
        """Read every training data set now, before a step needs it; returns what went wrong.

        A set that cannot be read is not an error here: the message is returned (and the
        step that asks for the set later gets it again), so a node starts either way.
        """
        problems = []
        for name in self._training:
            try:
                self.training_data(name)
            except (ConfideError, ValueError) as exc:
                problems.append(f"training data {name!r}: {exc}" if isinstance(exc, ValueError) else str(exc))
        return problems

    def table_names(self) -> list[str]:
        return sorted(self._sources)

    def table(self, name: str) -> pa.Table:
        """Table ``name`` without its identifier columns: no algorithm reads those."""
        return self._full_table(name, self._visible(self._config(name)))

    def row_keys(self, name: str) -> npt.NDArray[np.uint64] | None:
        """A 64-bit key per row of :meth:`table` for the release record; ``None`` where it keeps none.

        A keyed hash (BLAKE2b, this node's key) of the first identifier column the policy
        declares, so the record holds no identifier and keys stay put when rows move; else
        the row's position in the table as read.
        """
        rules = self._policy.for_table(name)
        source = self._config(name)
        if not rules.differencing:
            return None
        if not rules.identifiers:
            return np.arange(self.table(name).num_rows, dtype=np.uint64)
        stamp = _mtime(source) if source.format is not SourceFormat.SQL else None
        cached = self._keys_cache.get(name)
        if stamp is not None and cached is not None and cached[0] == stamp:
            return cached[1]
        column = self._full_table(name, source).column(rules.identifiers[0])
        key = self._row_hash_key
        keys = np.fromiter(
            (
                int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8, key=key).digest(), "little")
                for v in pc.cast(column, pa.string()).to_pylist()
            ),
            dtype=np.uint64,
            count=len(column),
        )
        if stamp is not None:
            self._keys_cache[name] = (stamp, keys)
        return keys

    def _full_table(self, name: str, source: DataSourceConfig) -> pa.Table:
        hidden = [c for c in self._config(name).columns if c not in source.columns]
        if source.format is SourceFormat.SQL:
            return _arrow(source, _database.fetch_rows(source))
        mtime = _mtime(source)
        cached = self._cache.get(name)
        if cached is None or cached[0] != mtime:
            cached = self._cache[name] = (mtime, _read(self._config(name)))
        return cached[1].drop_columns(hidden) if hidden else cached[1]

    def _visible(self, source: DataSourceConfig) -> DataSourceConfig:
        """``source`` with the columns its policy declares identifiers left out."""
        hidden = set(self._policy.for_table(source.name).identifiers)
        if not hidden:
            return source
        return source.model_copy(
            update={"columns": {k: v for k, v in source.columns.items() if k not in hidden}}
        )

    def files(self) -> dict[str, str]:
        return {
            s.name: os.path.basename(str(s.path))
            for s in self._sources.values()
            if s.format is not SourceFormat.SQL
        }

    def source(self, name: str) -> TableSource:
        source = self._visible(self._config(name))
        if source.format is SourceFormat.SQL:
            return _database.table_source(source)
        stamp = _mtime(source)
        cached = self._selects.get(name)
        if cached is None or cached[0] != stamp:
            # Describing a Parquet file opens it: done again only when the file changes.
            select = _csv_select(source) if source.format is SourceFormat.CSV else _parquet_select(source)
            cached = self._selects[name] = (stamp, select)
        return TableSource(name, cached[1], "duckdb", None)

    def run_sql(self, sql: str, tables: Sequence[str]) -> list[tuple[object, ...]]:
        """Run one SELECT (trusted SQL, written by a step) in the one database ``tables`` live in."""
        sources = [self._config(t) for t in tables]
        files = [s.name for s in sources if s.format is not SourceFormat.SQL]
        if not sources or files:
            raise AlgorithmError(f"tables {', '.join(files) or '(none)'} are not in a database; scan them")
        where = {str(_database.database_url(s)) for s in sources}
        if len(where) > 1:
            raise AlgorithmError(f"tables {', '.join(tables)} are not all in one database")
        return _database.run_select(sources, sql)

    def _config(self, name: str) -> DataSourceConfig:
        """The source of table ``name``, recorded as read by the current step."""
        source = self._sources.get(name)
        if source is None:
            offered = ", ".join(self.table_names()) or "none"
            raise AlgorithmError(f"this node has no table {name!r}; it offers: {offered}")
        self._read.add(name)
        return source


def _mtime(source: DataSourceConfig) -> float:
    try:
        return os.stat(str(source.path)).st_mtime
    except OSError:
        raise AlgorithmError(f"table {source.name!r}: its file is missing on this node") from None


def _read(source: DataSourceConfig) -> pa.Table:
    schema = pa.schema([(c, _ARROW[t]) for c, t in source.columns.items()])
    try:
        if source.format is SourceFormat.CSV:
            table = pacsv.read_csv(
                source.path,
                convert_options=pacsv.ConvertOptions(
                    column_types=schema, include_columns=list(source.columns)
                ),
            )
        else:
            table = pq.read_table(source.path, columns=list(source.columns))
            table = table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError) as exc:
        raise _mismatch(source, exc) from None
    except OSError as exc:
        raise AlgorithmError(f"table {source.name!r} cannot be read: {_first_line(exc)}") from None
    return table


def _arrow(source: DataSourceConfig, rows: Sequence[Sequence[object]]) -> pa.Table:
    """A database table's rows as Arrow with the declared types, checked value by value."""
    values = list(zip(*rows, strict=True)) if rows else [() for _ in source.columns]
    try:
        arrays = [
            pa.array(list(column)).cast(_ARROW[declared])
            for column, declared in zip(values, source.columns.values(), strict=True)
        ]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _mismatch(source, exc) from None
    return pa.Table.from_arrays(arrays, names=list(source.columns))


def _mismatch(source: DataSourceConfig, exc: Exception) -> AlgorithmError:
    # Arrow's message may quote a data value: it goes to the node's own log only.
    where = source.path if source.format is not SourceFormat.SQL else source.table
    log.error("table %s (%s) does not match its schema: %s", source.name, where, _first_line(exc))
    return AlgorithmError(
        f"table {source.name!r} does not match the schema declared in the node config "
        f"(columns {', '.join(source.columns)}); the node's log names the offending column"
    )


def _csv_select(source: DataSourceConfig) -> str:
    """DuckDB's scan of a CSV file: its declared columns, parsed as their declared types."""
    types = ", ".join(f"{_string(c)}: '{_DUCKDB[t]}'" for c, t in source.columns.items())
    columns = ", ".join(_identifier(c) for c in source.columns)
    # Identifiers and strings are quoted by sqlglot; nothing here comes from a researcher.
    return (
        f"SELECT {columns} FROM read_csv({_string(str(source.path))}, header = true, delim = ',', "  # noqa: S608
        f"types = {{{types}}})"
    )


def _parquet_select(source: DataSourceConfig) -> str:
    """DuckDB's scan of a Parquet file: its declared columns, cast where the file's type differs."""
    scan = f"read_parquet({_string(str(source.path))})"
    try:
        with duckdb.connect() as connection:
            described = connection.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()  # noqa: S608
    except duckdb.Error as exc:
        log.error("table %s (%s) cannot be read: %s", source.name, source.path, _first_line(exc))
        raise AlgorithmError(
            f"table {source.name!r}: its file cannot be read as Parquet; the node's log says why"
        ) from None
    found = {str(row[0]): str(row[1]) for row in described}
    columns = []
    for column, declared in source.columns.items():
        stored = found.get(column)
        if stored is None:
            raise AlgorithmError(
                f"table {source.name!r}: its Parquet file has no column {column!r}, which the node "
                "config declares"
            )
        if not _fits(declared, stored):
            raise AlgorithmError(
                f"table {source.name!r}: column {column!r} is {stored} in its Parquet file, which cannot "
                f"hold {declared.value} values; fix its type in node.yaml"
            )
        name = _identifier(column)
        target = _DUCKDB[declared]
        columns.append(name if stored == target else f"CAST({name} AS {target}) AS {name}")
    return f"SELECT {', '.join(columns)} FROM {scan}"  # noqa: S608


def _fits(declared: ColumnType, stored: str) -> bool:
    if declared is ColumnType.STR:
        return True
    if declared is ColumnType.BOOL:
        return stored == "BOOLEAN"
    integer = stored in _DUCKDB_INTEGERS
    if declared is ColumnType.INT:
        return integer
    return integer or stored in ("FLOAT", "DOUBLE") or stored.startswith("DECIMAL")


def _identifier(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def _string(text: str) -> str:
    return exp.Literal.string(text).sql(dialect="duckdb")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
