"""The node's DP-SGD privacy accountant: one history of noisy steps per dataset, persisted.

Every round of DP-SGD a node runs on a dataset adds ``(noise_multiplier, sample_rate,
steps)`` to that dataset's history, whichever job or researcher asked for it; the epsilon
spent is the composition of the whole history (Rényi DP or PRV, see
:mod:`confide.learning._privacy`), which is far tighter than adding up each job's
epsilon as the generic :class:`confide.node._ledger.PrivacyLedger` does. Before a job
starts, :meth:`PrivacyAccountant.check` refuses a plan that would take the dataset past
its budget and says how much is left; each round is then recorded with
:meth:`PrivacyAccountant.charge` *before* its update leaves the node, so a crash can make
the node over-count, never under-count.

Storage follows the ledger's pattern: one SQLite file (stdlib :mod:`sqlite3`, WAL mode,
created 0600), one row per (dataset, job, round) so a redelivered round is not charged
twice, every charge a check-and-insert under ``BEGIN IMMEDIATE`` so two processes can
never both spend the last of a budget. Rows are plain numbers, never pickled objects.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from confide._errors import ConfigError, PolicyError
from confide.learning._privacy import Accounting, NoisySteps, epsilon_spent

__all__ = ["AccountedRound", "BudgetLike", "PrivacyAccountant"]

# "CFDP" in ASCII (PRAGMA application_id): a DP-SGD accountant, not the (epsilon, delta) ledger.
_APPLICATION_ID = 0x43464450
_SCHEMA_VERSION = 1
_SCHEMA = """
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
"""
# Accountants are numerical; a relative slack this small cannot buy a meaningful overspend.
_TOLERANCE = 1e-9


class BudgetLike(Protocol):
    """Anything with an ``epsilon`` and a ``delta``, e.g. the node policy's ``EpsilonDelta``."""

    @property
    def epsilon(self) -> float: ...

    @property
    def delta(self) -> float: ...


@dataclass(frozen=True)
class AccountedRound:
    """One recorded round: which job, round and researcher, what it cost, when (ms since the epoch)."""

    job_id: str
    round: int
    researcher: str
    spent: NoisySteps
    at_ms: int


class PrivacyAccountant:
    """The persisted DP-SGD history of every dataset of a node, in the SQLite file at ``path``.

    Parameters
    ----------
    path : Path
        The accountant's file; created with mode 0600 if missing. Its folder must exist.
    accounting : Accounting
        How a history becomes epsilon (RDP by default; PRV is tighter and slower).
    busy_timeout_s : float
        How long an operation waits for another process that holds the write lock.

    Raises
    ------
    ConfigError
        The file cannot be created or opened, or is not a confide DP-SGD accountant.
    """

    def __init__(
        self, path: Path, *, accounting: Accounting = Accounting.RDP, busy_timeout_s: float = 5.0
    ) -> None:
        self.path = path
        self.accounting = accounting
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        _create_private(path)
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

    def __enter__(self) -> PrivacyAccountant:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def rounds(self, dataset: str) -> list[AccountedRound]:
        """Every round recorded on ``dataset``, oldest first."""
        with self._transaction("BEGIN") as conn:
            return _rounds(conn, dataset)

    def history(self, dataset: str) -> list[NoisySteps]:
        """The accountant's history of ``dataset``: one entry per recorded round, oldest first."""
        return [r.spent for r in self.rounds(dataset)]

    def epsilon_spent(self, dataset: str, delta: float) -> float:
        """The epsilon spent on ``dataset`` so far, at ``delta``."""
        return epsilon_spent(self.history(dataset), delta, self.accounting)

    def check(
        self, *, dataset: str, job_id: str, planned: Sequence[NoisySteps] | None, budget: BudgetLike | None
    ) -> float:
        """Refuse a planned job that would take ``dataset`` past ``budget``; call it before training.

        Parameters
        ----------
        dataset, job_id
            Which of the node's datasets, and the job (named in the message).
        planned : sequence of NoisySteps or None
            Everything the job will run (e.g. one entry of rounds x local steps); ``None`` for
            a job without differential privacy, allowed only under an infinite budget.
        budget
            The policy's (epsilon, delta) for this dataset; epsilon is composed at its delta.
            ``None`` (no budget in the policy) refuses every job.

        Returns
        -------
        float
            The epsilon the dataset will have spent once the job has run.

        Raises
        ------
        PolicyError
            The job would exceed the budget (the message says how much is left) or no budget.
        """
        limit = _limit(job_id, budget)
        with self._transaction("BEGIN") as conn:
            history = [r.spent for r in _rounds(conn, dataset)]
        return self._within_budget(dataset, job_id, history, planned, limit)

    def charge(
        self,
        *,
        dataset: str,
        job_id: str,
        round: int,
        spent: NoisySteps,
        budget: BudgetLike | None,
        researcher: str = "",
    ) -> float:
        """Record one round of ``job_id`` on ``dataset`` if the budget allows it; before its update leaves.

        Check and record are one ``BEGIN IMMEDIATE`` transaction. Recording the same round
        again with the same cost (a redelivered round) records nothing.

        Returns
        -------
        float
            The epsilon spent on ``dataset``, this round included, at the budget's delta.

        Raises
        ------
        PolicyError
            The round would exceed the budget, there is no budget, the round was recorded
            before with another cost, or another process held the file too long.
        """
        limit = _limit(job_id, budget)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            recorded = _rounds(conn, dataset)
            history = [r.spent for r in recorded]
            before = next((r for r in recorded if (r.job_id, r.round) == (job_id, round)), None)
            if before is not None:
                if before.spent != spent:
                    raise PolicyError(
                        f"round {round} of job {job_id} on dataset {dataset} was recorded with "
                        f"{before.spent}, not {spent}; a round cannot change its noise after the fact"
                    )
                return epsilon_spent(history, limit[1], self.accounting)
            after = self._within_budget(dataset, job_id, history, [spent], limit)
            conn.execute(
                "INSERT INTO noisy_steps (dataset, job_id, round, noise_multiplier, sample_rate, steps, "
                "researcher, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dataset,
                    job_id,
                    round,
                    spent.noise_multiplier,
                    spent.sample_rate,
                    spent.steps,
                    researcher,
                    time.time_ns() // 1_000_000,
                ),
            )
            return after

    def _within_budget(
        self,
        dataset: str,
        job_id: str,
        history: list[NoisySteps],
        planned: Sequence[NoisySteps] | None,
        limit: tuple[float, float],
    ) -> float:
        limit_eps, delta = limit
        spent = epsilon_spent(history, delta, self.accounting)
        after = math.inf if planned is None else epsilon_spent([*history, *planned], delta, self.accounting)
        if after <= limit_eps * (1 + _TOLERANCE):
            return after
        asked = (
            "no differential privacy (infinite epsilon)"
            if planned is None
            else f"epsilon {_num(after - spent)} more"
        )
        left = _num(max(0.0, limit_eps - spent))
        raise PolicyError(
            f"job {job_id} would spend {asked} on dataset {dataset}, which has {left} "
            f"of {_num(limit_eps)} epsilon left (at delta {_num(delta)}); ask for a smaller epsilon or fewer "
            "rounds, or ask the hospital to raise the budget (policy.privacy_budget in node.yaml)"
        )

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; sqlite errors become :class:`ConfideError` s."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ValueError(f"privacy accountant {self.path} is closed")
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

    def _initialise(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            if app_id not in (0, _APPLICATION_ID) or (app_id == 0 and tables):
                raise ConfigError(
                    f"{self.path} is an SQLite database but not a confide DP-SGD privacy accountant; "
                    "point the node at another file"
                )
            if version > _SCHEMA_VERSION:
                raise ConfigError(
                    f"privacy accountant {self.path} was written by a newer confide (schema {version}); "
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
                f"privacy accountant {self.path} is locked by another process; try the job again "
                "(is a second node agent running with the same file?)"
            )
        return ConfigError(
            f"privacy accountant {self.path} cannot be read or written ({exc}); restore it from a backup "
            "(deleting it would forget all privacy spent so far)"
        )


def _create_private(path: Path) -> None:
    if not path.parent.is_dir():
        raise ConfigError(f"privacy accountant {path}: folder {path.parent} does not exist; create it")
    try:
        # O_CREAT with 0600 rather than chmod afterwards: never readable by others, even briefly.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise ConfigError(f"cannot open privacy accountant {path}: {exc.strerror}") from None


def _rollback(conn: sqlite3.Connection) -> None:
    # A failed statement may already have ended the transaction, and a failing ROLLBACK
    # must not hide the error that led to it.
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _rounds(conn: sqlite3.Connection, dataset: str) -> list[AccountedRound]:
    rows = conn.execute(
        "SELECT job_id, round, researcher, noise_multiplier, sample_rate, steps, at_ms FROM noisy_steps "
        "WHERE dataset = ? ORDER BY rowid",
        (dataset,),
    ).fetchall()
    return [
        AccountedRound(str(job), int(rnd), str(who), NoisySteps(float(sigma), float(q), int(steps)), int(at))
        for job, rnd, who, sigma, q, steps, at in rows
    ]


def _limit(job_id: str, budget: BudgetLike | None) -> tuple[float, float]:
    if budget is None:
        raise PolicyError(
            f"job {job_id} trains with differential privacy but this node has no privacy_budget in its "
            "policy; add one to node.yaml to allow it"
        )
    if not (budget.epsilon > 0 and 0 < budget.delta < 1):
        raise PolicyError(
            f"the privacy budget (epsilon {budget.epsilon}, delta {budget.delta}) is invalid: epsilon "
            "must be positive and delta strictly between 0 and 1"
        )
    return budget.epsilon, budget.delta


def _num(x: float) -> str:
    """``0.30000000000000004`` as ``0.3``, ``1.2345678`` as ``1.23``: enough digits to decide on."""
    return "inf" if x == math.inf else repr(float(f"{x:.3g}"))
