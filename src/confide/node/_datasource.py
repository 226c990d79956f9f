"""Reading a node's tables (CSV, Parquet) into Arrow, checked against their declared schema.

A column that is missing, or whose values do not convert to the declared type, is an
error naming the table, file and column; the researcher gets the message, never the data.
Tables are cached per worker process and re-read when the file changes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from confide._errors import AlgorithmError
from confide.node._config import ColumnType, DataSourceConfig, SourceFormat

__all__ = ["LocalData"]

log = logging.getLogger("confide.node.data")

_ARROW = {
    ColumnType.INT: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.STR: pa.string(),
    ColumnType.BOOL: pa.bool_(),
}


class LocalData:
    """The node's tables, loaded lazily; implements the algorithms' ``DataContext``."""

    def __init__(self, sources: Sequence[DataSourceConfig]) -> None:
        self._sources = {s.name: s for s in sources}
        self._cache: dict[str, tuple[float, pa.Table]] = {}

    def table_names(self) -> list[str]:
        return sorted(self._sources)

    def table(self, name: str) -> pa.Table:
        source = self._sources.get(name)
        if source is None:
            offered = ", ".join(self.table_names()) or "none"
            raise AlgorithmError(f"this node has no table {name!r}; it offers: {offered}")
        try:
            mtime = os.stat(source.path).st_mtime
        except OSError:
            raise AlgorithmError(f"table {name!r}: its file is missing on this node") from None
        cached = self._cache.get(name)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        table = _read(source)
        self._cache[name] = (mtime, table)
        return table


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
        # Arrow's message may quote a data value: it goes to the node's own log only.
        log.error(
            "table %s (%s) does not match its schema: %s",
            source.name,
            source.path,
            _first_line(exc),
        )
        raise AlgorithmError(
            f"table {source.name!r} does not match the schema declared in the node config "
            f"(columns {', '.join(source.columns)}); the node's log names the offending column"
        ) from None
    except OSError as exc:
        raise AlgorithmError(f"table {source.name!r} cannot be read: {_first_line(exc)}") from None
    return table


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
