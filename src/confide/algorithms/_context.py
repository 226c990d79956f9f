"""What an algorithm's node half sees: its data (in the worker), its peers and policy (in the agent).

A step reads the node's declared tables through a :class:`DataContext`; a multi-party
protocol talks to the task's other nodes, the hub's secure sums and the node's privacy
accounting through a :class:`PeerContext`. Both are Protocols: the node implements them,
tests implement them in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from confide.protocols.secagg import Contribution

if TYPE_CHECKING:
    from confide.learning import TrainingSplit

__all__ = ["MAIN_STEP", "DataContext", "PeerContext", "TableSource", "TrainingCost", "TrainingSpend"]

MAIN_STEP = "main"
"""The name of an algorithm's one step (``Algorithm.step``); others are named in ``Algorithm.steps``."""


@dataclass(frozen=True)
class TableSource:
    """How SQL reads one of the node's tables where it lives, for steps that push SQL down.

    Parameters
    ----------
    name : str
        The declared table name.
    select : str
        One SELECT, written by the node, of exactly the declared columns under their declared
        names and types; trusted SQL for :func:`confide.query.local_sql`'s ``source``.
    dialect : str or None
        The sqlglot dialect ``select`` is written in and the database speaks (``"duckdb"``
        for files, ``"postgres"``, ``"sqlite"``); ``None`` for a database the query
        generator does not write SQL for (read it with :meth:`DataContext.table` instead).
    database : str or None
        The database ``select`` runs in (its URL without the password), the same for tables in
        the same database: run SQL there with :meth:`DataContext.run_sql`. ``None``: a file,
        which ``select`` scans in any DuckDB.
    """

    name: str
    select: str
    dialect: str | None
    database: str | None


@dataclass(frozen=True)
class TrainingCost:
    """What one round of DP-SGD costs: ``steps`` noisy steps at ``noise_multiplier`` and ``sample_rate``.

    ``noise_multiplier`` is ``None`` for training without differential privacy (allowed only
    where the policy says ``allow_training_without_dp``). ``rounds_left`` counts this round.
    """

    noise_multiplier: float | None
    sample_rate: float
    steps: int
    rounds_left: int
    delta: float


@dataclass(frozen=True)
class TrainingSpend:
    """Epsilon spent (at ``delta``) by this job and on the dataset by every job, this round included."""

    job_epsilon: float
    dataset_epsilon: float
    delta: float


class DataContext(Protocol):
    """What a step may read: the node's declared tables, by name, which node it runs at, and its rules.

    The node records which tables a step reads through :meth:`table`, :meth:`source` and
    :meth:`run_sql`, and checks what leaves against those tables' policy.
    """

    @property
    def node_id(self) -> str:
        """The node this step runs at: set by the node itself, never by the researcher."""
        ...

    def table(self, name: str) -> pa.Table:
        """The table ``name`` as Arrow, checked against its declared schema."""
        ...

    def table_names(self) -> list[str]:
        """Names of the tables this node offers."""
        ...

    def files(self) -> dict[str, str]:
        """The tables kept in files, each with its file's name (no folder): what job specs name."""
        ...

    def source(self, name: str) -> TableSource:
        """Where table ``name`` lives and the SQL that reads its declared columns there."""
        ...

    def training_data(self, name: str) -> TrainingSplit:
        """Training data set ``name`` (node.yaml ``training_data``): its training and held-out parts."""
        ...

    def run_sql(self, sql: str, tables: Sequence[str]) -> list[tuple[object, ...]]:
        """Run one SELECT in the database that all of ``tables`` live in; its rows.

        ``sql`` reads the tables only through their :attr:`TableSource.select`. The node
        runs it read-only, in a transaction it rolls back.
        """
        ...

    @property
    def min_count(self) -> int:
        """The node policy's smallest number of its rows that a released figure may cover."""
        ...

    def row_keys(self, name: str) -> npt.NDArray[np.uint64] | None:
        """A key per row of :meth:`table` (same order) for the node's release record; ``None``: none kept.

        The node decides what a key is (a keyed hash of a declared identifier, or the
        row's position); a step only says which rows each cell of its release used.
        """
        ...

    def allows_extremes(self, table: str) -> bool:
        """Whether the node's policy lets a per-node minimum and maximum of ``table`` leave it.

        Both are single patients' values: withheld unless the hospital allows them
        (``policy.tables.<table>.allow_extremes``).
        """
        ...


class PeerContext(Protocol):
    """What a multi-party protocol sees: this node, the task's nodes, sealed messaging."""

    @property
    def node_id(self) -> str:
        """This node's id."""
        ...

    @property
    def nodes(self) -> list[str]:
        """Every node of the task, sorted (the same list at every node)."""
        ...

    async def local(self, params: Mapping[str, object], step: str = MAIN_STEP) -> dict[str, object]:
        """Run one of the algorithm's steps on this node's data, in the worker process.

        ``step`` names it: :data:`MAIN_STEP` for ``Algorithm.step``, or a key of ``Algorithm.steps``.
        """
        ...

    async def send(self, peer: str, data: bytes) -> None:
        """Send ``data`` to ``peer``, sealed end to end (the hub relays ciphertext)."""
        ...

    async def recv(self, peer: str, timeout_s: float = 60.0) -> bytes:
        """The next message from ``peer``; :class:`AlgorithmError` after ``timeout_s``."""
        ...

    async def send_stream(self, peer: str, data: bytes, *, window: int = 8) -> None:
        """Send a large payload to ``peer`` as sealed 1 MiB chunks, ``window`` in flight."""
        ...

    async def recv_stream(self, peer: str, timeout_s: float = 60.0) -> bytes:
        """The next stream from ``peer``, reassembled and checked."""
        ...

    async def secure_sum(
        self,
        values: npt.NDArray[np.unsignedinteger[Any]],
        *,
        label: str = "sum",
        bits: int = 64,
        threshold: int | None = None,
        timeout_s: float = 300.0,
        leave_after_input: bool = False,
        masked: bool = True,
    ) -> Contribution:
        """Add ``values`` (in Z_2^bits) to the task's secure sum ``label``, the hub as server.

        Only the researcher learns the total (it removes the output pads); see
        :mod:`confide.protocols.secagg`.
        """
        ...

    async def withdraw_from_sum(
        self, length: int, reason: str, *, label: str = "sum", bits: int = 64, threshold: int | None = None
    ) -> None:
        """Sit out the secure sum ``label`` (so the others need not wait) and say why."""
        ...

    @property
    def min_count(self) -> int:
        """The node policy's smallest number of rows a statistic may cover."""
        ...

    async def charge_privacy(self, dataset: str, epsilon: float, delta: float) -> None:
        """Spend privacy budget on ``dataset`` in the node's ledger; :class:`PolicyError` if exhausted."""
        ...

    async def authorise_release(self, charges: Mapping[str, tuple[float, float]], *, noised: bool) -> None:
        """Check a secure release against the node's per-table policy, then charge its noise.

        The secure-sum driver calls it once per task, after this node's figures are gathered
        and checked and before anything leaves. Refuses (:class:`PolicyError` naming the table
        and the policy key, no data) when a table this task's steps read requires differential
        privacy and the release is not noised on every round (``noised`` False) or that table
        is not among ``charges``; then charges each table of ``charges`` (epsilon, delta) to the
        researcher's budget, exactly as :meth:`charge_privacy` does.
        """
        ...

    async def check_differencing(self, table: str, cells: Sequence[npt.NDArray[np.uint64]]) -> None:
        """Check the rows behind cells about to be released from ``table`` against the node's record.

        ``cells`` are sorted arrays of the row keys (:meth:`DataContext.row_keys`) behind
        each cell. Refuses (:class:`PolicyError`, no numbers) if one differs from a cell
        released earlier from the table by at least one and fewer than ``min_count`` rows;
        otherwise records them. The secure-sum driver calls it for every release without noise.
        """
        ...

    async def charge_training(
        self, dataset: str, job_id: str, round: int, cost: TrainingCost
    ) -> TrainingSpend:
        """Record one round of DP-SGD on training data ``dataset`` in the node's accountant.

        Refused (:class:`PolicyError`, saying how much is left) if this round and the
        ``cost.rounds_left - 1`` like it still to come would take the dataset past the
        policy's budget, counting every job ever run on it. Call it before training.
        """
        ...
