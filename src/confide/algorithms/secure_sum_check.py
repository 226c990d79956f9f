"""``diagnostics.secure_sum``: check and time secure aggregation through the hub, no patient data.

Every node adds a synthetic vector whose sum the researcher can predict: the node at
position ``p`` (0-based, nodes sorted) contributes ``(p + 1) * (i + 1)`` at element
``i``, so the total of survivors ``S`` is ``(i + 1) * sum_{p in S} (p + 1)``. Nodes
listed in ``leave_after_input`` drop their hub connection right after sending their
masked input, to exercise and time dropout recovery. Each node reports how long its
part of the round took; the researcher fetches the total with
``Client.secure_sum(task_id, label)``.
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError
from confide.algorithms._context import DataContext, PeerContext
from confide.algorithms._registry import Algorithm

__all__ = ["SECURE_SUM_CHECK", "SecureSumCheckOutput", "SecureSumCheckParams", "expected_total"]


class SecureSumCheckParams(BaseModel):
    """The size of the vector, the ring, and who drops out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    length: int = Field(default=1000, ge=1, le=16_000_000)
    bits: int = Field(default=64)
    label: str = Field(default="check", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    threshold: int | None = Field(default=None, ge=1)
    leave_after_input: list[str] = Field(default_factory=list)
    masked: bool = Field(default=True, description="False: the unmasked baseline round (synthetic data only)")
    timeout_s: float = Field(default=300.0, gt=0, le=3600)


class SecureSumCheckOutput(BaseModel):
    """One node's view of the round."""

    model_config = ConfigDict(extra="forbid")

    node: str
    session: str
    survivors: list[str]
    left: bool
    round_ms: float
    bytes_sent: int
    bytes_received: int


def expected_total(nodes: list[str], survivors: list[str], length: int, bits: int) -> np.ndarray:
    """The sum the researcher should get for ``survivors`` of the sorted ``nodes``."""
    weight = sum(sorted(nodes).index(n) + 1 for n in survivors)
    dtype = np.dtype(f"u{bits // 8}")
    return (np.arange(1, length + 1, dtype=np.uint64) * np.uint64(weight)).astype(dtype)


def _no_local_step(data: DataContext, params: SecureSumCheckParams) -> SecureSumCheckOutput:
    raise AlgorithmError("diagnostics.secure_sum runs only as a multi-party protocol")


async def _check(peers: PeerContext, params: SecureSumCheckParams) -> SecureSumCheckOutput:
    if params.bits not in (32, 64):
        raise AlgorithmError(f"bits must be 32 or 64, not {params.bits}")
    position = peers.nodes.index(peers.node_id)
    dtype = np.dtype(f"u{params.bits // 8}")
    values = (np.arange(1, params.length + 1, dtype=np.uint64) * np.uint64(position + 1)).astype(dtype)
    leave = peers.node_id in params.leave_after_input
    started = time.perf_counter()
    outcome = await peers.secure_sum(
        values,
        label=params.label,
        bits=params.bits,
        threshold=params.threshold,
        timeout_s=params.timeout_s,
        leave_after_input=leave,
        masked=params.masked,
    )
    return SecureSumCheckOutput(
        node=peers.node_id,
        session=outcome.session,
        survivors=list(outcome.survivors),
        left=leave,
        round_ms=(time.perf_counter() - started) * 1000,
        bytes_sent=outcome.bytes_sent,
        bytes_received=outcome.bytes_received,
    )


SECURE_SUM_CHECK = Algorithm(
    name="diagnostics.secure_sum",
    description="secure aggregation of a synthetic vector through the hub (check and timing)",
    params=SecureSumCheckParams,
    output=SecureSumCheckOutput,
    step=_no_local_step,
    protocol=_check,
)
