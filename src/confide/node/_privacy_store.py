"""The one SQLite file in which the node records every privacy spend, and how it is kept.

The node's privacy budget (:mod:`confide.node._budget`) keeps two records in one file,
``policy.ledger`` (by default ``<kit dir>/privacy-ledger.sqlite``), as two tables::

    charges      statistics ledger (confide.node._ledger): one row per differentially
                 private release, (researcher, dataset, task_id) -> epsilon, delta, at_ms
    noisy_steps  DP-SGD accountant (confide.node._training_ledger): one row per training
                 round, (dataset, job_id, round) -> noise_multiplier, sample_rate, steps,
                 researcher, at_ms
    released_cells  release record (confide.node._releases): the row set of every cell
                 released without noise, (dataset, size, digest) -> keys, task_id, at_ms

This module is the file discipline both share. :class:`PrivacyStore`

1. creates the file with mode 0600 (``O_CREAT`` with the mode, never readable by others
   even briefly) and opens it in WAL mode, marked ``PRAGMA application_id`` "CONF";
2. checks the schema version (``PRAGMA user_version``) and migrates it forward, one step
   of :data:`_MIGRATIONS` per version; a version newer than this code is refused;
3. imports, once, the DP-SGD accountant file of earlier confide versions
   (``dpsgd-accountant.sqlite`` beside the ledger): its rows are copied into
   ``noisy_steps`` in one transaction, then the file is renamed
   ``dpsgd-accountant.sqlite.imported`` (never deleted). Forgetting a spend would reset
   a budget, so a crash between copying and renaming only makes the next open copy
   again, and a row already there (same primary key) is not copied twice;
4. runs every operation as one transaction on one connection under a lock: ``BEGIN`` to
   read, ``BEGIN IMMEDIATE`` to check and record, so two threads, or two processes on the
   same file, can never both spend the last of a budget; sqlite's errors become
   :class:`PolicyError` (the file is locked: try again) or :class:`ConfigError`.

The agent calls the store from threads (:func:`asyncio.to_thread`), so the one connection
is opened with ``check_same_thread=False`` and every use holds the lock; it is held for one
short transaction only, and a writer in another process is waited for at most
``busy_timeout_s``.

Schema versions: 1 had ``charges`` only (and the accountant in its own file); 2 adds
``noisy_steps``; 3 adds ``released_cells``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Protocol

from confide._errors import ConfigError, PolicyError

__all__ = ["LEGACY_ACCOUNTANT_FILE", "SCHEMA_VERSION", "BudgetLike", "PrivacyStore", "amount"]

log = logging.getLogger("confide.node")

# "CONF" in ASCII: marks the file as a confide privacy ledger (PRAGMA application_id).
_APPLICATION_ID = 0x434F4E46
# Step i takes the schema from version i to version i + 1; never edit a released step.
_MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS charges (
        researcher TEXT NOT NULL,
        dataset    TEXT NOT NULL,
        task_id    TEXT NOT NULL,
        epsilon    REAL NOT NULL,
        delta      REAL NOT NULL,
        at_ms      INTEGER NOT NULL,
        PRIMARY KEY (researcher, dataset, task_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS noisy_steps (
        dataset          TEXT NOT NULL,
        job_id           TEXT NOT NULL,
        round            INTEGER NOT NULL,
        noise_multiplier REAL NOT NULL,
        sample_rate      REAL NOT NULL,
        steps            INTEGER NOT NULL,
        researcher       TEXT NOT NULL,
        at_ms            INTEGER NOT NULL,
        PRIMARY KEY (dataset, job_id, round)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS released_cells (
        dataset  TEXT NOT NULL,
        size     INTEGER NOT NULL,
        digest   BLOB NOT NULL,
        keys     BLOB NOT NULL,
        task_id  TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        PRIMARY KEY (dataset, size, digest)
    )
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

# The DP-SGD accountant of confide before schema 2: its own file beside the ledger, with
# the same noisy_steps table, marked "CFDP" (PRAGMA application_id), schema version 1.
LEGACY_ACCOUNTANT_FILE = "dpsgd-accountant.sqlite"
_LEGACY_APPLICATION_ID = 0x43464450
_LEGACY_SCHEMA_VERSION = 1
_SELECT_STEPS = (
    "SELECT dataset, job_id, round, noise_multiplier, sample_rate, steps, researcher, at_ms "
    "FROM noisy_steps ORDER BY rowid"
)
_INSERT_STEP = (
    "INSERT INTO noisy_steps (dataset, job_id, round, noise_multiplier, sample_rate, steps, researcher, "
    "at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

_Row = tuple[str, str, int, float, float, int, str, int]


class BudgetLike(Protocol):
    """Anything with an ``epsilon`` and a ``delta``, e.g. :class:`confide.node._config.EpsilonDelta`."""

    @property
    def epsilon(self) -> float: ...

    @property
    def delta(self) -> float: ...


class PrivacyStore:
    """The node's privacy file at ``path``: opened, migrated, and used one transaction at a time.

    Parameters
    ----------
    path
        The file; created with mode 0600 if missing. Its folder must exist.
    busy_timeout_s
        How long an operation waits for another process that holds the write lock.

    Raises
    ------
    ConfigError
        The file cannot be created or opened, is not a privacy ledger, was written by a
        newer confide, or an accountant file of an earlier confide beside it cannot be
        imported.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        _create_private(path)
        try:
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode = WAL")
            with self.transaction("BEGIN IMMEDIATE") as conn:
                self._migrate(conn)
            self._import_legacy_accountant()
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from None
            raise

    def close(self) -> None:
        """Close the file; further calls raise :class:`ValueError`. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PrivacyStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction (``begin``: ``"BEGIN"`` or ``"BEGIN IMMEDIATE"``) under the lock.

        Committed when the block ends, rolled back when it raises; sqlite errors become
        :class:`PolicyError` (locked by another process) or :class:`ConfigError`.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ValueError(f"privacy ledger {self.path} is closed")
            try:
                conn.execute(begin)
            except sqlite3.Error as exc:
                raise self._translate(exc) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise self._translate(exc) from None
                raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if app_id not in (0, _APPLICATION_ID) or (app_id == 0 and tables):
            raise ConfigError(
                f"{self.path} is an SQLite database but not a confide privacy ledger; point "
                "policy.ledger in node.yaml at another file"
            )
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"privacy ledger {self.path} was written by a newer confide (schema {version}, this "
                f"confide knows up to {SCHEMA_VERSION}); upgrade confide on this node"
            )
        if version == SCHEMA_VERSION:
            return
        for step in _MIGRATIONS[version:]:
            conn.execute(step)
        conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if version:
            log.info("privacy ledger %s: schema %d migrated to %d", self.path, version, SCHEMA_VERSION)

    def _import_legacy_accountant(self) -> None:
        legacy = self.path.with_name(LEGACY_ACCOUNTANT_FILE)
        if legacy == self.path or not legacy.exists():
            return
        # Under the write lock of the ledger: another process importing the same file
        # waits, then finds every row already there.
        with self.transaction("BEGIN IMMEDIATE") as conn:
            rows = _read_legacy(legacy, self._busy_timeout_s)
            if rows is None:  # renamed meanwhile by another process that imported it
                return
            copied = sum(_copy_step(conn, row, self.path, legacy) for row in rows)
        log.warning(
            "imported %d DP-SGD rounds (%d were there already) from %s into the privacy ledger %s",
            copied,
            len(rows) - copied,
            legacy,
            self.path,
        )
        _retire(legacy)

    def _translate(self, exc: sqlite3.Error) -> PolicyError | ConfigError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return PolicyError(
                f"privacy ledger {self.path} is locked by another process; try the task again "
                "(is a second node agent running with the same ledger?)"
            )
        return ConfigError(
            f"privacy ledger {self.path} cannot be read or written ({exc}); restore it from a backup "
            "(deleting it would forget all privacy spent so far and start every researcher's budget again)"
        )


def amount(x: float, significant: int) -> str:
    """``x`` to ``significant`` digits for a message: ``0.30000000000000004`` as ``0.3``."""
    return repr(float(f"{x:.{significant}g}"))


def _create_private(path: Path) -> None:
    if not path.parent.is_dir():
        raise ConfigError(
            f"privacy ledger {path}: folder {path.parent} does not exist; create it or change "
            "policy.ledger in node.yaml"
        )
    try:
        # O_CREAT with 0600 rather than chmod afterwards: never readable by others, even briefly.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise ConfigError(f"cannot open privacy ledger {path}: {exc.strerror}") from None


def _rollback(conn: sqlite3.Connection) -> None:
    # A failed statement may already have ended the transaction, and a failing ROLLBACK
    # must not hide the error that led to it.
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _read_legacy(legacy: Path, busy_timeout_s: float) -> list[_Row] | None:
    """Every row of an old accountant file, oldest first; ``None`` if the file is gone."""
    cannot = (
        f"cannot import {legacy}, the DP-SGD accountant of an earlier confide, into the privacy "
        "ledger beside it"
    )
    try:
        # mode=rw: opening never creates the file (it may have been renamed meanwhile).
        conn = sqlite3.connect(f"{legacy.absolute().as_uri()}?mode=rw", uri=True, timeout=busy_timeout_s)
    except sqlite3.OperationalError as exc:
        if not legacy.exists():
            return None
        raise ConfigError(f"{cannot} ({exc}); check its permissions") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if app_id == 0 and not tables:
            return []  # created by an old node that stopped before writing anything
        if app_id != _LEGACY_APPLICATION_ID or version > _LEGACY_SCHEMA_VERSION:
            raise ConfigError(
                f"{cannot}: it is not a confide DP-SGD privacy accountant of schema "
                f"{_LEGACY_SCHEMA_VERSION}; move it away if it is not one"
            )
        rows = conn.execute(_SELECT_STEPS).fetchall()
        return [
            (str(d), str(j), int(r), float(s), float(q), int(n), str(w), int(t))
            for d, j, r, s, q, n, w, t in rows
        ]
    except sqlite3.Error as exc:
        raise ConfigError(
            f"{cannot} ({exc}); stop any node agent of an earlier confide that uses it, or restore it "
            "from a backup (deleting it would forget every DP-SGD round it recorded)"
        ) from None
    finally:
        conn.close()


def _copy_step(conn: sqlite3.Connection, row: _Row, path: Path, legacy: Path) -> bool:
    """Copy one old row into ``noisy_steps`` unless it is there already; ``True`` if copied."""
    key, cost = row[:3], row[3:6]
    there = conn.execute(
        "SELECT noise_multiplier, sample_rate, steps FROM noisy_steps WHERE dataset = ? AND job_id = ? "
        "AND round = ?",
        key,
    ).fetchone()
    if there is None:
        conn.execute(_INSERT_STEP, row)
        return True
    if tuple(there) != cost:
        dataset, job_id, round_ = key
        raise ConfigError(
            f"round {round_} of job {job_id} on dataset {dataset} is recorded with another cost in "
            f"{legacy} ({cost}) than in the privacy ledger {path} ({tuple(there)}); keep both files and "
            "ask confide's maintainers how to merge them"
        )
    return False


def _retire(legacy: Path) -> None:
    """Rename an imported accountant file ``<name>.imported``, never over another file.

    A file left in place (the rename failed) is imported again on the next start, which
    copies nothing twice; so a failure here is only logged.
    """
    candidates = [legacy.with_name(f"{legacy.name}.imported")]
    candidates += [legacy.with_name(f"{legacy.name}.imported-{i}") for i in range(2, 100)]
    target = next((c for c in candidates if not c.exists()), None)
    if target is None:
        log.warning("cannot rename %s: %s and 98 more names are taken", legacy, candidates[0])
        return
    try:
        legacy.rename(target)
    except FileNotFoundError:  # another process imported it and renamed it first
        return
    except OSError as exc:
        log.warning("cannot rename %s to %s: %s", legacy, target, exc.strerror)
