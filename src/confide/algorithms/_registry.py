"""The algorithm registry: allow-listed steps a node may run, found by entry point.

An :class:`Algorithm` declares its parameters and its output as pydantic models; the
node validates the researcher's parameters before running and the step's output before
it leaves, so an algorithm cannot send out more than it declared. Third-party packages
add algorithms under the entry-point group ``confide.algorithms``; a node still runs only
those its policy allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from confide._errors import AlgorithmError
from confide.protocols.secagg import Contribution

if TYPE_CHECKING:
    from confide.learning._data import TrainingSplit

__all__ = [
    "ENTRY_POINT_GROUP",
    "Algorithm",
    "DataContext",
    "PeerContext",
    "TableSource",
    "TrainingCost",
    "TrainingSpend",
    "available",
    "get_algorithm",
]

ENTRY_POINT_GROUP = "confide.algorithms"


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
    """What a step may read: the node's declared tables, by name."""

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

    async def local(self, params: Mapping[str, object]) -> dict[str, object]:
        """Run the algorithm's ``step`` on this node's data, in the worker process."""
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

    async def charge_training(
        self, dataset: str, job_id: str, round: int, cost: TrainingCost
    ) -> TrainingSpend:
        """Record one round of DP-SGD on training data ``dataset`` in the node's accountant.

        Refused (:class:`PolicyError`, saying how much is left) if this round and the
        ``cost.rounds_left - 1`` like it still to come would take the dataset past the
        policy's budget, counting every job ever run on it. Call it before training.
        """
        ...


@dataclass(frozen=True)
class Algorithm:
    """One registered algorithm step.

    Parameters
    ----------
    name : str
        Dotted name researchers use (``stats.summary``).
    description : str
        One line for ``confide algorithms`` and error messages.
    params : type[BaseModel]
        Model of the parameters the researcher sends (sealed).
    output : type[BaseModel]
        Model of what the step may return; anything else is refused by the node.
    step : Callable
        ``step(data, params) -> output``; runs in the node's worker process.
    protocol : Callable, optional
        For multi-party algorithms: ``await protocol(peers, params) -> output`` runs in the
        node's agent and talks to the task's other nodes through ``peers``; it gets its
        local figures by ``await peers.local(params)`` (the ``step``, in the worker).
    local : type[BaseModel], optional
        What ``step`` returns when a ``protocol`` combines it (defaults to ``output``).
    """

    name: str
    description: str
    params: type[BaseModel]
    output: type[BaseModel]
    step: Callable[[DataContext, Any], BaseModel]
    protocol: Callable[[PeerContext, Any], Awaitable[BaseModel]] | None = None
    local: type[BaseModel] | None = None

    def parse_params(self, raw: Mapping[str, object]) -> BaseModel:
        """Validate researcher parameters; :class:`AlgorithmError` names the bad field."""
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            raise AlgorithmError(f"invalid parameters for {self.name}: {_describe(exc)}") from None

    def run(self, data: DataContext, raw_params: Mapping[str, object]) -> dict[str, object]:
        """Run the step and return its output, validated against the declared model."""
        produced = self.step(data, self.parse_params(raw_params))
        return self._checked(produced, self.local or self.output)

    async def run_protocol(self, peers: PeerContext, raw_params: Mapping[str, object]) -> dict[str, object]:
        """Run the multi-party protocol and validate what it produced."""
        if self.protocol is None:
            raise AlgorithmError(f"{self.name} is not a multi-party algorithm")
        produced = await self.protocol(peers, self.parse_params(raw_params))
        return self._checked(produced, self.output)

    def _checked(self, produced: BaseModel, declared: type[BaseModel]) -> dict[str, object]:
        try:
            checked = declared.model_validate(produced.model_dump())
        except ValidationError as exc:
            raise AlgorithmError(
                f"{self.name} produced output that does not match its declaration "
                f"({_describe(exc)}); nothing was sent"
            ) from None
        return checked.model_dump(mode="json")


@cache
def _registered() -> dict[str, Algorithm]:
    found: dict[str, Algorithm] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        algorithm = ep.load()
        if not isinstance(algorithm, Algorithm) or algorithm.name != ep.name:
            raise AlgorithmError(
                f"entry point {ep.name!r} ({ep.value}) is not an Algorithm named {ep.name!r}"
            )
        found[ep.name] = algorithm
    return found


def available() -> list[str]:
    """Names of every registered algorithm, sorted."""
    return sorted(_registered())


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm ``name``; :class:`AlgorithmError` lists the known ones."""
    try:
        return _registered()[name]
    except KeyError:
        known = ", ".join(available()) or "none"
        raise AlgorithmError(f"unknown algorithm {name!r}; registered algorithms: {known}") from None


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{where}: {err['msg']}"
