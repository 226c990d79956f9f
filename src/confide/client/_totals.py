"""What the researcher's client makes of a task's sealed reports: totals for ``finalise``, and failures.

Pure functions over opened results (:class:`~confide.client.TaskResults`): the nodes'
:class:`~confide.algorithms.SecureReport` are parsed, and every node of the task that is
not in every round's sum is given a reason in its own words, or the generic one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from confide.algorithms import SecureReport, SecureTotals
from confide.client._results import TaskResults

__all__ = ["no_contribution", "secure_totals", "why_failed"]


def secure_totals(
    task_id: str,
    nodes: tuple[str, ...],
    totals: Mapping[str, npt.NDArray[np.float64]],
    survivors: Mapping[str, tuple[str, ...]],
    results: TaskResults,
    withheld: Mapping[str, npt.NDArray[np.bool_]] | None = None,
) -> SecureTotals:
    """The decoded totals with each node's report, or why it sat out."""
    reports: dict[str, SecureReport] = {}
    sat_out: dict[str, str] = {}
    for result in results:
        if not result.ok or result.output is None:
            sat_out[result.node] = result.error or "failed"
            continue
        try:
            reports[result.node] = SecureReport.model_validate(result.output)
        except ValidationError:
            sat_out[result.node] = "its report is not a secure algorithm's report"
    sums = SecureTotals(
        task_id, tuple(sorted(nodes)), totals, survivors, reports, sat_out, dict(withheld or {})
    )
    if totals:
        for node in sorted(set(nodes) - set(sums.summed) - set(sat_out)):
            sat_out[node] = "left a secure sum before it ended"
    return sums


def no_contribution(task_id: str, results: TaskResults) -> str:
    """The error when no node contributed: every node's reason."""
    detail = "; ".join(f"{r.node}: {r.error or 'failed'}" for r in results if not r.ok) or "no results"
    return f"no node contributed to task {task_id}: {detail}"


def why_failed(results: TaskResults, error: str) -> str:
    """A failed round's error with the nodes' own reasons."""
    reasons = "; ".join(f"{r.node}: {r.error}" for r in results if not r.ok and r.error)
    return error + (f" (the nodes said: {reasons})" if reasons else "")
