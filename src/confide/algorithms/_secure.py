"""The one secure-sum driver: map -> secure sum -> finalise, with the node's checks in one place.

An algorithm that combines nodes' figures by secure aggregation declares its rounds
(:class:`SecureRound`: label, length, fixed-point encoding, optional distributed noise) as
a pure function of its parameters and the task's nodes, so every node and the researcher
compute the same ones without trusting the hub. At every node :func:`contribute` then:

1. gathers this node's figures (:class:`LocalFigures`, by default the algorithm's step in
   the worker): one float vector per round and the rows each covers;
2. checks them: every round has its declared length, and covers at least the policy's
   ``min_count`` rows (:func:`require_rows`);
3. withholds every cell below ``min_count`` (:func:`withhold_small_cells`): a round that
   declares ``cells`` (groups, bins, crosstab cells) comes with the rows behind each of its
   elements, an element from fewer than ``min_count`` of this node's rows is sent as zero,
   and one flag per cell, appended to the vector, says "withheld here". The flags are summed
   like the rest, so the researcher learns how many nodes withheld a cell, never a count;
4. encodes each vector in fixed point (its bound checked);
5. asks the node to authorise the release against its per-table policy (a table that
   requires differential privacy refuses a release without noise) and charges the privacy
   budget, once per table for the noise of all the task's rounds on it, last, so a
   refusal in 1-4 spends nothing; any failure in 1-5 withdraws this node
   from *every* round at once, so the others finish without waiting for a timeout, and
   the reason reaches the researcher only in the node's sealed result;
6. adds this node's share of the distributed noise and runs each secure sum, the hub as
   the blind server (a failed round withdraws the node from the rounds after it); the
   node reports who was summed (:class:`SecureReport`).

The researcher removes the pads, decodes each round, splits off the cells' flags and
hands the totals (:class:`SecureTotals`) to the algorithm's pure ``finalise``.

A round with distributed noise withholds no cells: its release is differentially private
as a whole, and dropping a node's small cells before the noise would let one row move a
whole cell in or out, more than the sensitivity the noise is calibrated to.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError, ConfideError, PolicyError
from confide.algorithms._context import PeerContext
from confide.crypto import FixedPoint
from confide.protocols import DistributedNoise, sample_discrete_gaussian
from confide.protocols.secagg import Contribution

__all__ = [
    "CellRows",
    "LocalFigures",
    "SecureReport",
    "SecureRound",
    "SecureTotals",
    "check_max_rows",
    "contribute",
    "decode_vector",
    "encode_vector",
    "require_rows",
    "split_withheld",
    "withhold_small_cells",
]

Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SecureRound:
    """One secure sum of a task, the same at every node and at the researcher.

    Parameters
    ----------
    label : str
        The round's name within the task (``stat``, ``q0``, ``update``).
    length : int
        Elements of every node's vector.
    encoding : FixedPoint
        How the vector is encoded in Z_2^bits; its bound is checked before anything leaves.
    noise : DistributedNoise, optional
        Each node adds its share of discrete Gaussian noise (distributed DP).
    charge : str, optional
        The table whose privacy budget pays ``noise``'s (epsilon, delta); required with ``noise``.
    empty_ok : bool
        A node with no rows for this round adds zeros rather than sitting out.
    cells : int
        The vector is this many cells of equal width (groups, bins, crosstab cells), each
        withheld at a node where it comes from fewer than ``min_count`` rows; 0: the round
        is one cell, governed by its rows alone.
    """

    label: str
    length: int
    encoding: FixedPoint
    noise: DistributedNoise | None = None
    charge: str | None = None
    empty_ok: bool = False
    cells: int = 0

    def __post_init__(self) -> None:
        if self.noise is not None and self.charge is None:
            raise AlgorithmError(f"round {self.label!r} adds noise but names no table to charge it to")
        if self.noise is not None and self.encoding.bits != 64:
            # Noise is room-sized for Z_2^64 (FixedPoint's bound includes 40 sigma of it).
            raise AlgorithmError(f"round {self.label!r} adds noise, which needs 64-bit fixed point")
        if self.cells < 0 or (self.cells and self.length % self.cells):
            raise AlgorithmError(
                f"round {self.label!r} declares {self.cells} cells, which do not divide its "
                f"{self.length} elements"
            )

    @property
    def withholds(self) -> bool:
        """Whether nodes withhold this round's small cells (and append a flag per cell)."""
        return self.cells > 0 and self.noise is None

    @property
    def summed_length(self) -> int:
        """Elements of the secure sum: the vector, then one flag per cell where cells are withheld."""
        return self.length + (self.cells if self.withholds else 0)


class CellRows(BaseModel):
    """Which of a table's rows each cell of a round comes from: what the node's differencing check reads.

    ``keys`` are the node's keys of the rows used (:meth:`DataContext.row_keys`, base64 of
    little-endian uint64), ``cells`` the cell of each (base64 of int64; 0 for a round of one
    cell). They stay at the node: the driver hands them to the node's release record.
    """

    model_config = ConfigDict(extra="forbid")

    table: str
    keys: str
    cells: str

    @classmethod
    def of(cls, table: str, keys: npt.NDArray[np.uint64], cells: npt.ArrayLike) -> CellRows:
        """Rows from numpy arrays of the same length."""
        cell_array = np.ascontiguousarray(cells, dtype="<i8")
        if cell_array.shape != keys.shape:
            raise AlgorithmError("a step's row keys and their cells differ in length")
        return cls(
            table=table,
            keys=base64.b64encode(np.ascontiguousarray(keys, dtype="<u8").tobytes()).decode(),
            cells=base64.b64encode(cell_array.tobytes()).decode(),
        )

    def by_cell(self, cells: int) -> dict[int, npt.NDArray[np.uint64]]:
        """The sorted, unique keys of each cell that has rows (cell index below ``max(cells, 1)``)."""
        try:
            keys = np.frombuffer(base64.b64decode(self.keys, validate=True), dtype="<u8").astype(np.uint64)
            where = np.frombuffer(base64.b64decode(self.cells, validate=True), dtype="<i8")
        except (binascii.Error, ValueError):
            raise AlgorithmError("a step's row keys are not base64 of 64-bit integers") from None
        if keys.shape != where.shape or (where.size and (where.min() < 0 or where.max() >= max(cells, 1))):
            raise AlgorithmError("a step's row keys do not match the cells of its round")
        order = np.argsort(where, kind="stable")  # a radix sort: rows keep their order in a cell
        keys, where = keys[order], where[order]
        bounds = np.flatnonzero(np.diff(where)) + 1
        return {
            int(group[0]): _sorted_unique(part)
            for group, part in zip(np.split(where, bounds), np.split(keys, bounds), strict=True)
            if part.size
        }


def _sorted_unique(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    # Positions read in order are sorted already: checking costs far less than sorting.
    return keys if bool(np.all(keys[1:] > keys[:-1])) else np.unique(keys)


class LocalFigures(BaseModel):
    """What a node's step hands the driver: a vector per round, the rows each covers, and details.

    Vectors travel from the worker as base64 of little-endian float64 (:func:`encode_vector`).
    ``counts`` gives, for a round with cells, how many of the node's rows each element comes
    from (the same length as its vector). ``details`` go, after the rounds, into the node's
    sealed report (e.g. epsilon spent).
    """

    model_config = ConfigDict(extra="forbid")

    vectors: dict[str, str]
    rows: dict[str, int]
    counts: dict[str, str] = Field(default_factory=dict)
    members: dict[str, CellRows] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(
        cls,
        vectors: Mapping[str, Vector],
        rows: Mapping[str, int],
        details: Mapping[str, Any] | None = None,
        *,
        counts: Mapping[str, Vector] | None = None,
        members: Mapping[str, CellRows] | None = None,
    ) -> LocalFigures:
        """Figures from numpy vectors by round label."""
        return cls(
            vectors={k: encode_vector(v) for k, v in vectors.items()},
            rows=dict(rows),
            counts={k: encode_vector(v) for k, v in (counts or {}).items()},
            members=dict(members or {}),
            details=dict(details or {}),
        )


class SecureReport(BaseModel):
    """What a node reports to the researcher (sealed) after its rounds: never its own figures."""

    model_config = ConfigDict(extra="forbid")

    algorithm: str
    node: str
    survivors: dict[str, list[str]]
    min_count: int
    params: dict[str, Any] | None = None
    details: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class SecureTotals:
    """Everything the researcher's ``finalise`` gets: decoded totals and the nodes' reports."""

    task_id: str
    nodes: tuple[str, ...]
    totals: Mapping[str, Vector]
    survivors: Mapping[str, tuple[str, ...]]
    reports: Mapping[str, SecureReport] = field(default_factory=dict)
    sat_out: Mapping[str, str] = field(default_factory=dict)
    withheld: Mapping[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    """Per round with cells: whether each cell was withheld at some node (never how many rows)."""

    @property
    def min_count(self) -> int:
        """The largest ``min_count`` among the nodes that reported (0 if none did)."""
        return max((r.min_count for r in self.reports.values()), default=0)

    @property
    def summed(self) -> tuple[str, ...]:
        """Nodes whose data every round includes, sorted."""
        common = set(self.nodes)
        for survivors in self.survivors.values():
            common &= set(survivors)
        return tuple(sorted(common))


def encode_vector(vector: npt.ArrayLike) -> str:
    """A float vector as base64 of little-endian float64 (worker to agent)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f8").tobytes()).decode()


def decode_vector(text: str) -> Vector:
    """The inverse of :func:`encode_vector`."""
    try:
        return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f8").astype(np.float64)
    except (binascii.Error, ValueError):
        raise AlgorithmError("a local vector is not base64 of float64 values") from None


def check_max_rows(rows: int, max_rows: int, min_count: int, what: str) -> None:
    """Refuse ``rows`` beyond ``max_rows``, saying no more than their order of magnitude.

    ``max_rows`` is the researcher's, and "more than max_rows" would answer a search over it
    with an exact count: so ``max_rows`` must be at least ten times ``min_count``, and the
    refusal compares the next power of ten at or above ``rows`` (a node with 2,345 rows
    refuses ``max_rows`` below 10,000), so it tells only an order of magnitude above that.
    """
    if max_rows < 10 * min_count:
        raise PolicyError(
            f"max_rows {max_rows} is below ten times this node's min_count ({10 * min_count}); a small "
            "max_rows would tell how many rows a cohort has. Raise it"
        )
    magnitude = 10 ** math.ceil(math.log10(max(rows, 1)))
    if magnitude > max_rows:
        raise AlgorithmError(
            f"{what} may have more rows than max_rows={max_rows} at this node; raise max_rows to a power of "
            "ten above the largest table (the fixed-point bound grows with it)"
        )


def require_rows(peers: PeerContext, rows: int, what: str, *, empty_ok: bool = False) -> None:
    """Refuse figures that cover fewer than the policy's ``min_count`` rows (:class:`PolicyError`)."""
    if rows < peers.min_count and not (empty_ok and rows == 0):
        # How many rows it has is the node's data: the refusal says only that it is too few.
        raise PolicyError(
            f"node {peers.node_id!r} has fewer rows for {what} than its min_count "
            f"{peers.min_count}; it does not contribute"
        )


async def contribute(
    peers: PeerContext,
    rounds: Sequence[SecureRound],
    gather: Callable[[], Awaitable[LocalFigures]],
    *,
    timeout_s: float,
) -> tuple[LocalFigures, dict[str, Contribution]]:
    """Steps 1-5 of the module docstring at one node; the figures gathered and each round's outcome."""
    try:
        figures = await gather()
        encoded, released = {}, {}
        for secure_round in rounds:
            rows = figures.rows.get(secure_round.label)
            if rows is None:
                raise AlgorithmError(
                    f"the node's step says nothing of the rows of round {secure_round.label!r}"
                )
            require_rows(peers, rows, "this task", empty_ok=secure_round.empty_ok)
            released[secure_round.label] = withhold_small_cells(figures, secure_round, peers.min_count)
            encoded[secure_round.label] = secure_round.encoding.encode(released[secure_round.label])
        await _check_differencing(peers, rounds, figures, released)
        # Authorised and charged last, once everything else has passed: a refusal spends nothing.
        await _authorise(peers, rounds)
    except Exception as exc:
        await _withdraw(peers, rounds, exc)
        raise
    outcomes: dict[str, Contribution] = {}
    for secure_round in rounds:
        values = encoded[secure_round.label]
        if secure_round.noise is not None:
            # Z_2^64: the signed noise wraps into the ring as two's complement.
            values = values + sample_discrete_gaussian(
                secure_round.noise.sigma, secure_round.summed_length
            ).astype(values.dtype)
        try:
            outcomes[secure_round.label] = await peers.secure_sum(
                values, label=secure_round.label, bits=secure_round.encoding.bits, timeout_s=timeout_s
            )
        except Exception as exc:
            # The rounds after a failed one are left at once, not by their stage timeouts.
            await _withdraw(
                peers, [r for r in rounds if r.label not in outcomes and r is not secure_round], exc
            )
            raise
    return figures, outcomes


async def _check_differencing(
    peers: PeerContext, rounds: Sequence[SecureRound], figures: LocalFigures, released: Mapping[str, Vector]
) -> None:
    """Step 4b: the rows behind every cell this node releases without noise, to its release record."""
    cells: dict[str, list[npt.NDArray[np.uint64]]] = {}
    for secure_round in rounds:
        members = figures.members.get(secure_round.label)
        if secure_round.noise is not None or members is None:
            continue  # a noised release is governed by its privacy budget
        silent = _silent_cells(figures, secure_round, peers.min_count)
        # Decoding and grouping a million row keys takes a tenth of a second: not in the event loop.
        by_cell = await asyncio.to_thread(members.by_cell, secure_round.cells)
        for cell, keys in by_cell.items():
            if silent is None or not silent[cell]:
                cells.setdefault(members.table, []).append(keys)
    for table, listed in cells.items():
        await peers.check_differencing(table, listed)


def _silent_cells(
    figures: LocalFigures, secure_round: SecureRound, min_count: int
) -> npt.NDArray[np.bool_] | None:
    """The cells this node sends nothing of (every element withheld); ``None``: it sends every cell.

    A cell flagged for one small element still sends its others (a group's row count, the
    sums of its other columns): it is released, and recorded.
    """
    if not secure_round.withholds:
        return None
    counts = decode_vector(figures.counts[secure_round.label])
    return np.asarray((counts < min_count).reshape(secure_round.cells, -1).all(axis=1))


async def _authorise(peers: PeerContext, rounds: Sequence[SecureRound]) -> None:
    """The node's per-table release check; each table charged once for all its rounds' noise."""
    spends: dict[str, tuple[float, float]] = {}
    for secure_round in rounds:
        if secure_round.noise is not None and secure_round.charge is not None:
            epsilon, delta = spends.get(secure_round.charge, (0.0, 0.0))
            spends[secure_round.charge] = (
                epsilon + secure_round.noise.epsilon,
                delta + secure_round.noise.delta,
            )
    # Basic composition over the task's rounds; every round noised or the release is not DP.
    await peers.authorise_release(spends, noised=all(r.noise is not None for r in rounds))


async def _withdraw(peers: PeerContext, rounds: Sequence[SecureRound], exc: BaseException) -> None:
    """Leave every one of ``rounds``; the hub sees no reason, the node's log does."""
    # Every failure, an algorithm's own bug included, is a dropout from every round.
    reason = str(exc) if isinstance(exc, ConfideError) else type(exc).__name__
    for secure_round in rounds:
        with contextlib.suppress(ConfideError):  # the link is down: the hub drops this node anyway
            await peers.withdraw_from_sum(
                secure_round.summed_length, reason, label=secure_round.label, bits=secure_round.encoding.bits
            )


def _vector_of(figures: LocalFigures, secure_round: SecureRound) -> Vector:
    text = figures.vectors.get(secure_round.label)
    if text is None:
        raise AlgorithmError(f"the node's step produced no vector for round {secure_round.label!r}")
    vector = decode_vector(text)
    if vector.shape != (secure_round.length,):
        raise AlgorithmError(
            f"the node's vector for round {secure_round.label!r} has {vector.size} elements, "
            f"not the {secure_round.length} the task declares"
        )
    return vector


def withhold_small_cells(figures: LocalFigures, secure_round: SecureRound, min_count: int) -> Vector:
    """Step 3: the round's vector with elements from fewer than ``min_count`` rows zeroed, and cell flags.

    An empty cell is withheld too: "no patient of this group" discloses as much as "one"
    (and flagging only non-empty small cells would tell which groups a node has at all).
    """
    vector = _vector_of(figures, secure_round)
    if not secure_round.withholds:
        return vector
    text = figures.counts.get(secure_round.label)
    if text is None:
        raise AlgorithmError(
            f"the node's step gave no row counts for the cells of round {secure_round.label!r}"
        )
    counts = decode_vector(text)
    if counts.shape != vector.shape:
        raise AlgorithmError(
            f"the node's row counts for round {secure_round.label!r} do not match its vector"
        )
    small = counts < min_count
    withheld = small.reshape(secure_round.cells, -1).any(axis=1)
    return np.concatenate([np.where(small, 0.0, vector), withheld.astype(np.float64)])


def split_withheld(secure_round: SecureRound, total: Vector) -> tuple[Vector, npt.NDArray[np.bool_] | None]:
    """A decoded total as the round's vector and, for a round with cells, which were withheld somewhere."""
    if not secure_round.withholds:
        return total, None
    # Each flag is 0 or 1 per node: a sum above one half is a flag raised by at least one.
    return total[: secure_round.length], total[secure_round.length :] > 0.5
