"""The one secure-sum driver: map -> secure sum -> finalise, with the node's checks in one place.

An algorithm that combines nodes' figures by secure aggregation declares its rounds
(:class:`SecureRound`: label, length, fixed-point encoding, optional distributed noise) as
a pure function of its parameters and the task's nodes, so every node and the researcher
compute the same ones without trusting the hub. At every node :func:`contribute` then:

1. gathers this node's figures (:class:`LocalFigures`, by default the algorithm's step in
   the worker): one float vector per round and the rows each covers;
2. checks them: every round has its declared length, and covers at least the policy's
   ``min_count`` rows (:func:`require_rows`);
3. encodes each vector in fixed point (its bound checked);
4. charges the privacy budget, once per table for the noise of all the task's rounds on
   it, last, so a refusal in 1-3 spends nothing; any failure in 1-4 withdraws this node
   from *every* round at once, so the others finish without waiting for a timeout, and
   the reason reaches the researcher only in the node's sealed result;
5. adds this node's share of the distributed noise and runs each secure sum, the hub as
   the blind server (a failed round withdraws the node from the rounds after it); the
   node reports who was summed (:class:`SecureReport`).

The researcher removes the pads, decodes each round and hands the totals
(:class:`SecureTotals`) to the algorithm's pure ``finalise``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
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
    "LocalFigures",
    "SecureReport",
    "SecureRound",
    "SecureTotals",
    "contribute",
    "decode_vector",
    "encode_vector",
    "require_rows",
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
    """

    label: str
    length: int
    encoding: FixedPoint
    noise: DistributedNoise | None = None
    charge: str | None = None
    empty_ok: bool = False

    def __post_init__(self) -> None:
        if self.noise is not None and self.charge is None:
            raise AlgorithmError(f"round {self.label!r} adds noise but names no table to charge it to")
        if self.noise is not None and self.encoding.bits != 64:
            # Noise is room-sized for Z_2^64 (FixedPoint's bound includes 40 sigma of it).
            raise AlgorithmError(f"round {self.label!r} adds noise, which needs 64-bit fixed point")


class LocalFigures(BaseModel):
    """What a node's step hands the driver: a vector per round, the rows each covers, and details.

    Vectors travel from the worker as base64 of little-endian float64 (:func:`encode_vector`).
    ``details`` go, after the rounds, into the node's sealed report (e.g. epsilon spent).
    """

    model_config = ConfigDict(extra="forbid")

    vectors: dict[str, str]
    rows: dict[str, int]
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(
        cls, vectors: Mapping[str, Vector], rows: Mapping[str, int], details: Mapping[str, Any] | None = None
    ) -> LocalFigures:
        """Figures from numpy vectors by round label."""
        return cls(
            vectors={k: encode_vector(v) for k, v in vectors.items()},
            rows=dict(rows),
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
        encoded = {}
        for secure_round in rounds:
            rows = figures.rows.get(secure_round.label)
            if rows is None:
                raise AlgorithmError(
                    f"the node's step says nothing of the rows of round {secure_round.label!r}"
                )
            require_rows(peers, rows, "this task", empty_ok=secure_round.empty_ok)
            encoded[secure_round.label] = secure_round.encoding.encode(_vector_of(figures, secure_round))
        # Charged last, once everything else has passed: a refusal spends nothing.
        await _charge(peers, rounds)
    except Exception as exc:
        await _withdraw(peers, rounds, exc)
        raise
    outcomes: dict[str, Contribution] = {}
    for secure_round in rounds:
        values = encoded[secure_round.label]
        if secure_round.noise is not None:
            # Z_2^64: the signed noise wraps into the ring as two's complement.
            values = values + sample_discrete_gaussian(secure_round.noise.sigma, secure_round.length).astype(
                values.dtype
            )
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


async def _charge(peers: PeerContext, rounds: Sequence[SecureRound]) -> None:
    """Charge each table once for the noise of all the task's rounds on it (basic composition)."""
    spends: dict[str, tuple[float, float]] = {}
    for secure_round in rounds:
        if secure_round.noise is not None and secure_round.charge is not None:
            epsilon, delta = spends.get(secure_round.charge, (0.0, 0.0))
            spends[secure_round.charge] = (
                epsilon + secure_round.noise.epsilon,
                delta + secure_round.noise.delta,
            )
    for table, (epsilon, delta) in spends.items():
        await peers.charge_privacy(table, epsilon, delta)


async def _withdraw(peers: PeerContext, rounds: Sequence[SecureRound], exc: BaseException) -> None:
    """Leave every one of ``rounds``; the hub sees no reason, the node's log does."""
    # Every failure, an algorithm's own bug included, is a dropout from every round.
    reason = str(exc) if isinstance(exc, ConfideError) else type(exc).__name__
    for secure_round in rounds:
        with contextlib.suppress(ConfideError):  # the link is down: the hub drops this node anyway
            await peers.withdraw_from_sum(
                secure_round.length, reason, label=secure_round.label, bits=secure_round.encoding.bits
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
