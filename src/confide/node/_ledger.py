"""The node's privacy ledger: how much (epsilon, delta) each researcher has spent per dataset.

The ledger sits between the policy (``policy.privacy_budget`` in ``node.yaml``, see
:mod:`confide.node._config`) and the agent: before a differentially private task runs,
the agent charges what it asks for; the charge is refused if it would take the
researcher past the budget on that dataset.

Composition is *basic* (sequential): the epsilons of all charges add up, and so do the
deltas. That is conservative: advanced composition or a Rényi-DP accountant would let
the same budget cover more tasks, never fewer, so basic composition never under-counts.

Storage is one SQLite file (stdlib :mod:`sqlite3`) in WAL mode, one row per charge,
keyed by (researcher, dataset, task id) so a redelivered run is not charged twice. Every
operation is one transaction; a charge checks and records under ``BEGIN IMMEDIATE``, so
two threads, or two processes opening the same file, can never both spend the last of
a budget.

Threads: the agent calls the ledger through :func:`asyncio.to_thread`, so one
connection is opened with ``check_same_thread=False`` and every use of it holds a
lock. One connection (rather than one per call) keeps a call cheap and makes
:meth:`PrivacyLedger.close` mean something; the lock is held for one short transaction
only, and a writer in another process is waited for at most ``busy_timeout_s``.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from confide._errors import ConfigError, PolicyError

__all__ = ["BudgetLike", "Charge", "PrivacyLedger", "Spend"]

# Sums of floats drift by a few ulps (0.1 * 10 != 1.0 when added one at a time); a
# relative slack this small cannot let anyone spend a meaningful amount over budget.
_TOLERANCE = 1e-12

# "CONF" in ASCII: marks the file as a confide privacy ledger (PRAGMA application_id).
_APPLICATION_ID = 0x434F4E46
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    researcher TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    epsilon    REAL NOT NULL,
    delta      REAL NOT NULL,
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (researcher, dataset, task_id)
)
"""

_NO_BUDGET = (
    "this node has no privacy_budget in its policy; add one to node.yaml to allow "
    "differentially private tasks"
)


class BudgetLike(Protocol):
    """Anything with an ``epsilon`` and a ``delta``, e.g. :class:`confide.node._config.EpsilonDelta`."""

    @property
    def epsilon(self) -> float: ...

    @property
    def delta(self) -> float: ...


@dataclass(frozen=True)
class Spend:
    """What a researcher has spent on a dataset: summed epsilon and delta over ``tasks`` charges."""

    epsilon: float
    delta: float
    tasks: int


@dataclass(frozen=True)
class Charge:
    """One recorded charge: the task, what it spent, and when (milliseconds since the epoch)."""

    task_id: str
    epsilon: float
    delta: float
    at_ms: int


class PrivacyLedger:
    """The persisted privacy spent per (researcher, dataset), in the SQLite file at ``path``.

    Parameters
    ----------
    path
        The ledger file; created with mode 0600 if missing. Its folder must exist.
    busy_timeout_s
        How long an operation waits for another process that holds the write lock.

    Raises
    ------
    ConfigError
        The file cannot be created or opened, or is not a privacy ledger.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._create_private(path)
        try:
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._initialise(self._conn)
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

    def __enter__(self) -> PrivacyLedger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def spent(self, researcher: str, dataset: str) -> Spend:
        """What ``researcher`` has spent on ``dataset`` so far (basic composition: sums)."""
        with self._transaction("BEGIN") as conn:
            return _spend(conn, researcher, dataset)

    def history(self, researcher: str, dataset: str) -> list[Charge]:
        """Every charge of ``researcher`` on ``dataset``, oldest first."""
        with self._transaction("BEGIN") as conn:
            rows = conn.execute(
                "SELECT task_id, epsilon, delta, at_ms FROM charges "
                "WHERE researcher = ? AND dataset = ? ORDER BY rowid",
                (researcher, dataset),
            ).fetchall()
        return [Charge(str(t), float(e), float(d), int(at)) for t, e, d, at in rows]

    def charge(
        self,
        *,
        researcher: str,
        dataset: str,
        task_id: str,
        epsilon: float,
        delta: float,
        budget: BudgetLike | tuple[float, float] | None,
    ) -> Spend:
        """Record that ``task_id`` spends (``epsilon``, ``delta``) if the budget allows it.

        Check and record are one ``BEGIN IMMEDIATE`` transaction. Charging a task again
        with the same amounts (a redelivered run) records nothing and returns the current
        spend.

        Parameters
        ----------
        researcher, dataset, task_id
            Who spends, on which of this node's data sources, for which task.
        epsilon, delta
            What the task asks for: ``epsilon > 0`` and ``0 <= delta < 1``.
        budget
            The total allowed for this pair, e.g. ``policy.budget_for(researcher, dataset)``;
            ``None`` (the policy has no privacy budget) refuses every charge.

        Returns
        -------
        Spend
            What the researcher has spent on the dataset, this task included.

        Raises
        ------
        PolicyError
            The budget would be exceeded (the message says what remains), there is no
            budget, the amounts are invalid, the task was charged before with other
            amounts, or another process held the ledger too long.
        """
        _check_request(task_id, epsilon, delta)
        if budget is None:
            raise PolicyError(f"task {task_id} asks for differential privacy but {_NO_BUDGET}")
        limit_eps, limit_delta = budget if isinstance(budget, tuple) else (budget.epsilon, budget.delta)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            before = conn.execute(
                "SELECT epsilon, delta FROM charges WHERE researcher = ? AND dataset = ? AND task_id = ?",
                (researcher, dataset, task_id),
            ).fetchone()
            if before is not None:
                _check_same_amounts(task_id, researcher, dataset, (epsilon, delta), before)
                return _spend(conn, researcher, dataset)
            spent = _spend(conn, researcher, dataset)
            after_eps = math.fsum([spent.epsilon, epsilon])
            after_delta = math.fsum([spent.delta, delta])
            if not (_within(after_eps, limit_eps) and _within(after_delta, limit_delta)):
                raise PolicyError(
                    f"task {task_id} asks for epsilon {_num(epsilon)} (delta {_num(delta)}) but researcher "
                    f"{researcher} has {_num(_left(limit_eps, spent.epsilon))} of {_num(limit_eps)} left on "
                    f"dataset {dataset} (delta {_num(_left(limit_delta, spent.delta))} of "
                    f"{_num(limit_delta)} left); ask for less or ask the hospital to raise the budget "
                    f"(policy.privacy_budget in node.yaml)"
                )
            conn.execute(
                "INSERT INTO charges (researcher, dataset, task_id, epsilon, delta, at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (researcher, dataset, task_id, epsilon, delta, time.time_ns() // 1_000_000),
            )
            return _spend(conn, researcher, dataset)

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; sqlite errors become :class:`ConfideError` s."""
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

    def _create_private(self, path: Path) -> None:
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

    def _initialise(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            if app_id not in (0, _APPLICATION_ID) or (app_id == 0 and tables):
                raise ConfigError(
                    f"{self.path} is an SQLite database but not a confide privacy ledger; point "
                    "policy.ledger in node.yaml at another file"
                )
            if version > _SCHEMA_VERSION:
                raise ConfigError(
                    f"privacy ledger {self.path} was written by a newer confide (schema {version}); "
                    "upgrade confide on this node"
                )
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

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


def _rollback(conn: sqlite3.Connection) -> None:
    # A failed statement may already have ended the transaction, and a failing ROLLBACK
    # must not hide the error that led to it.
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _spend(conn: sqlite3.Connection, researcher: str, dataset: str) -> Spend:
    rows = conn.execute(
        "SELECT epsilon, delta FROM charges WHERE researcher = ? AND dataset = ?", (researcher, dataset)
    ).fetchall()
    # fsum: exact, so the total does not depend on the order rows come back in.
    return Spend(math.fsum(r[0] for r in rows), math.fsum(r[1] for r in rows), len(rows))


def _check_request(task_id: str, epsilon: float, delta: float) -> None:
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise PolicyError(f"task {task_id} asks for epsilon {epsilon}; it must be a positive finite number")
    if not (0 <= delta < 1):
        raise PolicyError(f"task {task_id} asks for delta {delta}; it must be at least 0 and below 1")


def _check_same_amounts(
    task_id: str, researcher: str, dataset: str, asked: tuple[float, float], recorded: tuple[float, float]
) -> None:
    if not all(
        math.isclose(a, r, rel_tol=_TOLERANCE, abs_tol=0.0) for a, r in zip(asked, recorded, strict=True)
    ):
        raise PolicyError(
            f"task {task_id} asks for epsilon {_num(asked[0])} (delta {_num(asked[1])}) on dataset {dataset} "
            f"for researcher {researcher}, which conflicts with the charge recorded for the same task "
            f"(epsilon {_num(recorded[0])}, delta {_num(recorded[1])}); submit it as a new task"
        )


def _within(total: float, limit: float) -> bool:
    return total <= limit + _TOLERANCE * limit


def _left(limit: float, spent: float) -> float:
    return max(0.0, limit - spent)


def _num(x: float) -> str:
    """``0.30000000000000004`` as ``0.3``, ``2.0`` as ``2.0``, ``1e-06`` as ``1e-06``."""
    return repr(float(f"{x:.10g}"))
