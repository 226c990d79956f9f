"""Federated statistics as algorithms: local vectors, secure aggregation, finalised by the researcher.

Each statistic of :mod:`confide.algorithms._secure_stats` becomes one algorithm
(``stats.moments``, ``stats.histogram``, ``stats.crosstab``, ``stats.correlation``,
``stats.zscore``). At every node:

1. the worker computes the statistic's fixed-length vector over the node's rows;
2. the node enforces its policy: it sits the round out (and says why) when the vector
   covers fewer than ``min_count`` of its rows, or when a differentially private task
   would exceed the researcher's privacy budget on the table (the spend is recorded in
   the node's ledger before anything leaves);
3. the vector is fixed-point encoded from the statistic's declared bounds, and, for a DP
   task, the node adds its share of discrete Gaussian noise (sized so that any
   ``threshold`` survivors together give the requested epsilon and delta);
4. it goes into the task's secure sum ``stat``; the hub sees only padded vectors.

The researcher's client removes the pads, decodes and finalises
(:func:`finalise_statistic`); groups and cells with a total count below the largest
``min_count`` of the nodes are suppressed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from confide._errors import ConfideError, PolicyError
from confide.algorithms._registry import Algorithm, DataContext, PeerContext
from confide.algorithms._secure_stats import (
    CORRELATION,
    CROSSTAB,
    HISTOGRAM,
    MOMENTS,
    ZSCORE,
    SecureStatistic,
    VectorLayout,
)
from confide.crypto import FixedPoint, min_bits
from confide.protocols._dp import DistributedNoise, sample_discrete_gaussian
from confide.protocols.secagg import SecAggConfig

__all__ = [
    "LABEL",
    "NoiseReport",
    "PrivacyRequest",
    "StatisticContribution",
    "algorithm_for",
    "encoding_for",
    "integer_sensitivity",
]

LABEL = "stat"  # the secure sum every node of a statistics task joins


class PrivacyRequest(BaseModel):
    """Distributed differential privacy for this task: the total (epsilon, delta) the release costs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(gt=0, le=100)
    delta: float = Field(gt=0, lt=1)


class LocalVector(BaseModel):
    """What the worker hands the protocol: the node's vector, and how many rows it covers."""

    model_config = ConfigDict(extra="forbid")

    values: list[float]
    rows: int = Field(ge=0)


class NoiseReport(BaseModel):
    """How one node noised its vector (sensitivities in fixed-point units)."""

    model_config = ConfigDict(extra="forbid")

    epsilon: float
    delta: float
    sigma: float
    threshold: int
    l1: float
    l2: float


class StatisticContribution(BaseModel):
    """What a node reports to the researcher (sealed): never its own figures."""

    model_config = ConfigDict(extra="forbid")

    statistic: str
    node: str
    session: str
    survivors: list[str]
    min_count: int
    params: dict[str, Any]
    privacy: NoiseReport | None = None


@dataclass(frozen=True)
class Encoding:
    """How a statistic's vectors are encoded for a round of ``parties`` nodes."""

    layout: VectorLayout
    fixed: FixedPoint
    threshold: int
    noise: DistributedNoise | None


def integer_sensitivity(layout: VectorLayout) -> tuple[float, float]:
    """L1 and L2 sensitivity in fixed-point units, rounding included.

    Rounding each element to the nearest integer can move every element that one row
    changes by up to one more unit; without knowing which elements those are, all
    ``length`` are counted (conservative). Integer statistics (scale 1) round nothing.
    """
    if layout.scale == 1:
        return layout.l1, layout.l2
    return layout.l1 * layout.scale + layout.length, layout.l2 * layout.scale + math.sqrt(layout.length)


def encoding_for(statistic: SecureStatistic, params: Any, nodes: list[str]) -> Encoding:
    """The fixed-point encoding and noise every node of the round computes alike."""
    layout = statistic.layout(params)
    threshold = SecAggConfig.create("probe", nodes, 1).threshold
    privacy: PrivacyRequest | None = getattr(params, "privacy", None)
    noise = None
    bound = layout.bound
    if privacy is not None:
        l1, l2 = integer_sensitivity(layout)
        noise = DistributedNoise.for_target(privacy.epsilon, privacy.delta, threshold, l1, l2)
        # room in the ring for every node's noise, far beyond any draw (40 sigma)
        bound += 40 * noise.sigma / layout.scale
    bits = 64 if privacy is not None else min_bits(layout.scale, bound, len(nodes))
    return Encoding(layout, FixedPoint(layout.scale, bound, len(nodes), bits), threshold, noise)


def algorithm_for(statistic: SecureStatistic) -> Algorithm:
    """The algorithm that computes ``statistic`` by secure aggregation."""
    params = create_model(
        f"{statistic.params.__name__}Task",
        __base__=statistic.params,
        privacy=(PrivacyRequest | None, None),
        timeout_s=(float, Field(default=300.0, gt=0, le=3600)),
    )

    def step(data: DataContext, task_params: Any) -> LocalVector:
        contribution = statistic.contribute(data, task_params)
        return LocalVector(values=contribution.values.tolist(), rows=contribution.rows)

    async def protocol(peers: PeerContext, task_params: Any) -> StatisticContribution:
        encoding = encoding_for(statistic, task_params, peers.nodes)
        bits, length = encoding.fixed.bits, encoding.layout.length
        try:
            local = LocalVector.model_validate(await peers.local(task_params.model_dump()))
            if local.rows < peers.min_count:
                raise PolicyError(
                    f"node {peers.node_id!r} has {local.rows} rows for this statistic, fewer than its "
                    f"min_count {peers.min_count}; it does not contribute"
                )
            if encoding.noise is not None:
                noise = encoding.noise
                await peers.charge_privacy(task_params.table, noise.epsilon, noise.delta)
            encoded = encoding.fixed.encode(np.asarray(local.values, dtype=np.float64))
        except ConfideError as exc:
            await peers.withdraw_from_sum(length, str(exc), label=LABEL, bits=bits)
            raise
        report = None
        if encoding.noise is not None:
            noise = encoding.noise
            encoded += sample_discrete_gaussian(noise.sigma, length).view(np.uint64)
            report = NoiseReport(
                epsilon=noise.epsilon,
                delta=noise.delta,
                sigma=noise.sigma,
                threshold=noise.parties,
                l1=noise.l1,
                l2=noise.l2,
            )
        outcome = await peers.secure_sum(encoded, label=LABEL, bits=bits, timeout_s=task_params.timeout_s)
        echoed = task_params.model_dump(mode="json")
        return StatisticContribution(
            statistic=statistic.name,
            node=peers.node_id,
            session=outcome.session,
            survivors=list(outcome.survivors),
            min_count=peers.min_count,
            params=echoed,
            privacy=report,
        )

    return Algorithm(
        name=statistic.name,
        description=statistic.description + " (secure aggregation)",
        params=params,
        output=StatisticContribution,
        step=step,
        protocol=protocol,
        local=LocalVector,
    )


MOMENTS_ALGORITHM = algorithm_for(MOMENTS)
HISTOGRAM_ALGORITHM = algorithm_for(HISTOGRAM)
CROSSTAB_ALGORITHM = algorithm_for(CROSSTAB)
CORRELATION_ALGORITHM = algorithm_for(CORRELATION)
ZSCORE_ALGORITHM = algorithm_for(ZSCORE)
