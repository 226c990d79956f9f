"""``diagnostics.relay``: measure the node-to-node path between two sites, like iperf.

The sending node streams ``size_mb`` MiB of random bytes (no patient data) to the
receiving node through the hub, in sealed 1 MiB chunks; each reports the SHA-256 of what
it sent or received and its throughput, so hospital IT can check that large payloads
pass their proxies and how fast. Other nodes of the task take no part.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError
from confide.algorithms._context import DataContext, PeerContext
from confide.algorithms._registry import Algorithm

__all__ = ["RELAY", "RelayOutput", "RelayParams"]

_MIB = 1024 * 1024


class RelayParams(BaseModel):
    """Who sends to whom, and how much."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: str
    receiver: str
    size_mb: int = Field(default=64, ge=1, le=4096)
    timeout_s: float = Field(default=120.0, gt=0, le=3600)


class RelayOutput(BaseModel):
    """What one node did."""

    model_config = ConfigDict(extra="forbid")

    role: str
    bytes: int = 0
    sha256: str | None = None
    seconds: float | None = None
    mb_per_s: float | None = None


class _Nothing(BaseModel):
    pass


def _no_local_step(data: DataContext, params: RelayParams) -> _Nothing:
    return _Nothing()


async def _relay(peers: PeerContext, params: RelayParams) -> RelayOutput:
    if params.sender == params.receiver or {params.sender, params.receiver} - set(peers.nodes):
        raise AlgorithmError("diagnostics.relay needs two different nodes of the task as sender and receiver")
    if peers.node_id == params.sender:
        block = secrets.token_bytes(_MIB)
        payload = block * params.size_mb
        started = time.perf_counter()
        await peers.send_stream(params.receiver, payload)
        await peers.recv(params.receiver, params.timeout_s)  # the receiver's "all there"
        return _report("sender", payload, time.perf_counter() - started)
    if peers.node_id == params.receiver:
        started = time.perf_counter()
        payload = await peers.recv_stream(params.sender, params.timeout_s)
        await peers.send(params.sender, b"done")
        return _report("receiver", payload, time.perf_counter() - started)
    return RelayOutput(role="bystander")


def _report(role: str, payload: bytes, seconds: float) -> RelayOutput:
    return RelayOutput(
        role=role,
        bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        seconds=seconds,
        mb_per_s=len(payload) / 1e6 / seconds,
    )


RELAY = Algorithm(
    name="diagnostics.relay",
    description="stream random bytes node to node through the hub and time it",
    params=RelayParams,
    output=RelayOutput,
    step=_no_local_step,
    protocol=_relay,
    local=_Nothing,
)
