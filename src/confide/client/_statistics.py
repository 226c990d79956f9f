"""The researcher's end of a federated statistic: unpad, decode, finalise, suppress, report epsilon.

The nodes' sealed reports echo the task's parameters and say how each node encoded and
noised its vector; the hub keeps only the padded sum. Here the pads come off
(:meth:`Client.secure_sum`), the fixed-point total is decoded, and the statistic is
finalised with the largest ``min_count`` among the nodes' policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from confide._errors import TaskError
from confide.algorithms import get_algorithm
from confide.algorithms._secure_stats import ResultTable, get_statistic
from confide.algorithms.secure_stats import LABEL, StatisticContribution, encoding_for
from confide.protocols._dp import DistributedNoise

if TYPE_CHECKING:
    from confide.client._client import Client, TaskResults

__all__ = ["StatisticResult", "check_statistic", "finalise_statistic"]


@dataclass(frozen=True)
class PrivacySpent:
    """The differential privacy of a released statistic."""

    epsilon: float
    delta: float
    target_epsilon: float
    survivors: int


@dataclass(frozen=True)
class StatisticResult:
    """A finalised federated statistic."""

    statistic: str
    output: BaseModel
    survivors: tuple[str, ...]
    refused: dict[str, str]
    min_count: int
    privacy: PrivacySpent | None
    tables: list[ResultTable]


def check_statistic(name: str, params: Mapping[str, Any], nodes: list[str]) -> None:
    """Refuse, before submitting, parameters the nodes would refuse alike (bad fields, overflow).

    Raises
    ------
    AlgorithmError
        Unknown statistic or invalid parameters.
    CryptoError
        A fixed-point encoding that could overflow with ``len(nodes)`` nodes.
    """
    statistic = get_statistic(name)
    encoding_for(statistic, get_algorithm(name).parse_params(params), nodes)


def finalise_statistic(
    client: Client, task_id: str, results: TaskResults, wait_s: float = 0.0
) -> StatisticResult:
    """Combine a statistics task: the secure sum, decoded and finalised.

    Raises
    ------
    TaskError
        If no node contributed, or the round failed (every node's reason is given).
    """
    reports: list[StatisticContribution] = []
    refused: dict[str, str] = {}
    for result in results:
        if result.ok and result.output is not None:
            try:
                reports.append(StatisticContribution.model_validate(result.output))
            except ValidationError:
                refused[result.node] = "its report is not a statistic's contribution"
        else:
            refused[result.node] = result.error or "failed"
    if not reports:
        detail = "; ".join(f"{node}: {why}" for node, why in sorted(refused.items())) or "no results"
        raise TaskError(f"no node contributed to task {task_id}: {detail}")
    first = reports[0]
    statistic = get_statistic(first.statistic)
    params = get_algorithm(first.statistic).parse_params(first.params)
    summed = client.secure_sum(task_id, LABEL, wait_s=wait_s)
    nodes = sorted({*summed.survivors, *summed.dropped, *refused, *(r.node for r in reports)})
    encoding = encoding_for(statistic, params, nodes)
    decoded = encoding.fixed.decode(summed.total)
    min_count = max(r.min_count for r in reports)
    output = statistic.finalise(params, decoded, min_count=min_count)
    privacy = None
    if first.privacy is not None:
        noise = DistributedNoise(
            first.privacy.epsilon,
            first.privacy.delta,
            first.privacy.sigma,
            first.privacy.threshold,
            first.privacy.l1,
            first.privacy.l2,
        )
        achieved = noise.achieved(len(summed.survivors))
        privacy = PrivacySpent(achieved, noise.delta, noise.epsilon, len(summed.survivors))
    return StatisticResult(
        first.statistic, output, summed.survivors, refused, min_count, privacy, statistic.tables(output)
    )
