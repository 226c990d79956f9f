"""Federated statistics as algorithms: each a declaration of its step, its one round and its finalise.

Each statistic of :mod:`confide.algorithms._secure_stats` becomes one algorithm
(``stats.moments``, ``stats.histogram``, ``stats.crosstab``, ``stats.correlation``,
``stats.zscore``):

- step (worker, every node): the statistic's fixed-length vector over the node's rows
  and how many rows it covers;
- round ``stat``: the vector fixed-point encoded from the statistic's declared bounds;
  for a DP task each node adds its share of discrete Gaussian noise (sized so that any
  ``threshold`` survivors together give the requested epsilon and delta), charged to the
  table's budget first. The node's checks (``min_count``, the budget, withdrawing on any
  failure) are the secure-sum driver's (:mod:`confide.algorithms._secure`);
- finalise (researcher): decode, finalise the statistic; groups and cells with a total
  count below the largest ``min_count`` of the nodes are suppressed there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from confide.algorithms._context import DataContext
from confide.algorithms._registry import Algorithm
from confide.algorithms._result import ResultTable, withheld_note
from confide.algorithms._secure import CellRows, LocalFigures, SecureRound, SecureTotals
from confide.algorithms._secure_stats import (
    CORRELATION,
    CROSSTAB,
    HISTOGRAM,
    MOMENTS,
    ZSCORE,
    SecureStatistic,
    VectorLayout,
    get_statistic,
)
from confide.crypto import FixedPoint, min_bits
from confide.protocols import DistributedNoise
from confide.protocols.secagg import SecAggConfig

__all__ = [
    "LABEL",
    "PrivacyRequest",
    "PrivacySpent",
    "StatisticResult",
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


@dataclass(frozen=True)
class PrivacySpent:
    """The differential privacy of a released statistic."""

    epsilon: float
    delta: float
    target_epsilon: float
    survivors: int


@dataclass(frozen=True)
class StatisticResult:
    """A finalised federated statistic (:class:`~confide.algorithms.Finalised`)."""

    statistic: str
    output: BaseModel
    survivors: tuple[str, ...]
    refused: dict[str, str]
    min_count: int
    privacy: PrivacySpent | None
    withheld: tuple[str, ...] = ()
    """Cells some node withheld for holding fewer than its ``min_count`` rows there."""

    @property
    def sat_out(self) -> dict[str, str]:
        """Nodes that did not contribute, and why."""
        return self.refused

    @property
    def tables(self) -> list[ResultTable]:
        """The statistic's own tables."""
        return get_statistic(self.statistic).tables(self.output)

    def notes(self) -> list[str]:
        """Who was summed, what was suppressed, the privacy spent."""
        lines = [
            f"secure aggregation over {len(self.survivors)} node(s): {', '.join(self.survivors)}; "
            f"values from fewer than {self.min_count} rows are suppressed"
        ]
        if self.withheld:
            lines.append(withheld_note(self.withheld))
        if self.privacy is not None:
            p = self.privacy
            lines.append(
                f"differential privacy: epsilon {p.epsilon:.3g} (asked {p.target_epsilon:.3g}), "
                f"delta {p.delta:.3g}, distributed noise from {p.survivors} node(s)"
            )
        return lines

    def to_json(self) -> dict[str, Any]:
        """The statistic as JSON."""
        privacy = None
        if self.privacy is not None:
            privacy = {"epsilon": self.privacy.epsilon, "delta": self.privacy.delta}
        return {
            "statistic": self.statistic,
            "output": self.output.model_dump(mode="json"),
            "survivors": list(self.survivors),
            "refused": self.refused,
            "min_count": self.min_count,
            "privacy": privacy,
            "withheld_at_some_nodes": list(self.withheld),
        }


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

    def step(data: DataContext, task_params: Any) -> LocalFigures:
        contribution = statistic.contribute(data, task_params)
        counts = None if contribution.counts is None else {LABEL: contribution.counts}
        members = None
        keys = data.row_keys(task_params.table) if task_params.privacy is None else None
        if contribution.members is not None and keys is not None:
            used = contribution.members >= 0
            members = {LABEL: CellRows.of(task_params.table, keys[used], contribution.members[used])}
        return LocalFigures.of(
            {LABEL: contribution.values}, {LABEL: contribution.rows}, counts=counts, members=members
        )

    def rounds(task_params: Any, nodes: Sequence[str]) -> list[SecureRound]:
        encoding = encoding_for(statistic, task_params, list(nodes))
        charge = task_params.table if encoding.noise is not None else None
        cells = len(statistic.cell_labels(task_params))
        return [
            SecureRound(LABEL, encoding.layout.length, encoding.fixed, encoding.noise, charge, cells=cells)
        ]

    def finalise(task_params: Any, sums: SecureTotals) -> StatisticResult:
        survivors = sums.survivors[LABEL]
        output = statistic.finalise(task_params, sums.totals[LABEL], min_count=sums.min_count)
        noise = encoding_for(statistic, task_params, list(sums.nodes)).noise
        privacy = None
        if noise is not None:
            privacy = PrivacySpent(noise.achieved(len(survivors)), noise.delta, noise.epsilon, len(survivors))
        flags = sums.withheld.get(LABEL)
        labels = statistic.cell_labels(task_params) if flags is not None else []
        withheld = tuple(
            label for label, flag in zip(labels, flags if flags is not None else [], strict=True) if flag
        )
        return StatisticResult(
            statistic.name, output, survivors, dict(sums.sat_out), sums.min_count, privacy, withheld
        )

    return Algorithm(
        name=statistic.name,
        description=statistic.description + " (secure aggregation)",
        params=params,
        step=step,
        rounds=rounds,
        finalise=finalise,
        echo_params=True,
    )


MOMENTS_ALGORITHM = algorithm_for(MOMENTS)
HISTOGRAM_ALGORITHM = algorithm_for(HISTOGRAM)
CROSSTAB_ALGORITHM = algorithm_for(CROSSTAB)
CORRELATION_ALGORITHM = algorithm_for(CORRELATION)
ZSCORE_ALGORITHM = algorithm_for(ZSCORE)
