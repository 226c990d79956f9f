"""``secure.ring_sum``: the ring secure sum of the vantage6 node-to-node study.

Protocol, over the task's nodes sorted by id (n >= 2), on vectors in Z_2^64:

1. each node computes its local figures (sum of a column as fixed point, row count);
2. the first node draws a uniformly random mask r from ``secrets`` and sends
   ``v_0 + r mod 2^64`` to the second;
3. node i receives the running sum from node i-1, adds ``v_i`` and passes it to node
   i+1 (the last one passes it back to the first);
4. the first node subtracts r: the total, which only it reports (sealed to the
   researcher); the other nodes report that they relayed.

Every message is sealed end to end between the two nodes; the hub relays ciphertext.

Weakness (why secure aggregation replaces it): node i's two neighbours together learn
``v_i`` (the sum it received and the sum it passed on differ by exactly ``v_i``); the
first node learns the total; and one node that drops out stops the ring. Secure
aggregation with pairwise masks and Shamir shares (Bonawitz et al. 2017) tolerates
collusion below its threshold and dropouts.
"""

from __future__ import annotations

import secrets
import struct
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AlgorithmError
from confide.algorithms._context import DataContext, PeerContext
from confide.algorithms._registry import Algorithm

__all__ = ["RING_SUM", "RingSumOutput", "RingSumParams"]

MODULUS = 1 << 64
_PAIR = struct.Struct(">QQ")


class RingSumParams(BaseModel):
    """Which column to add up, and with how many decimal digits of precision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(min_length=1)
    column: str = Field(min_length=1)
    decimals: int = Field(default=3, ge=0, le=9)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)


class RingFigures(BaseModel):
    """One node's contribution, in fixed point mod 2^64 (never leaves the node in clear)."""

    model_config = ConfigDict(extra="forbid")

    total: int = Field(ge=0, lt=MODULUS)
    count: int = Field(ge=0, lt=MODULUS)


class RingSumOutput(BaseModel):
    """The first node reports the total; the others that they relayed."""

    model_config = ConfigDict(extra="forbid")

    role: str
    nodes: int
    total: float | None = None
    count: int | None = None
    ring_ms: float | None = None


def _local(data: DataContext, params: RingSumParams) -> RingFigures:
    table = data.table(params.table)
    if params.column not in table.column_names:
        raise AlgorithmError(f"table {params.table!r} has no column {params.column!r}")
    column = table.column(params.column)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise AlgorithmError(f"column {params.column!r} is {column.type}, not numeric")
    values = pc.drop_null(column).to_numpy().astype(np.float64, copy=False)
    scaled = round(float(values.sum()) * 10**params.decimals)
    return RingFigures(total=scaled % MODULUS, count=int(values.size))


async def _ring(peers: PeerContext, params: RingSumParams) -> RingSumOutput:
    nodes = peers.nodes
    if len(nodes) < 2:
        raise AlgorithmError("secure.ring_sum needs at least two nodes in the task")
    index = nodes.index(peers.node_id)
    after, before = nodes[(index + 1) % len(nodes)], nodes[index - 1]
    mine = RingFigures.model_validate(await peers.local(params.model_dump()))
    if index == 0:
        mask = (secrets.randbits(64), secrets.randbits(64))
        started = time.perf_counter()
        await peers.send(
            after, _PAIR.pack((mine.total + mask[0]) % MODULUS, (mine.count + mask[1]) % MODULUS)
        )
        returned = await peers.recv(before, params.timeout_s)
        if len(returned) != _PAIR.size:
            raise AlgorithmError(f"malformed ring message from {before!r}")
        total, count = _PAIR.unpack(returned)
        ring_ms = (time.perf_counter() - started) * 1000
        total, count = (total - mask[0]) % MODULUS, (count - mask[1]) % MODULUS
        signed = total - MODULUS if total >= MODULUS // 2 else total
        return RingSumOutput(
            role="initiator",
            nodes=len(nodes),
            total=signed / 10**params.decimals,
            count=count,
            ring_ms=ring_ms,
        )
    running = await peers.recv(before, params.timeout_s)
    if len(running) != _PAIR.size:
        raise AlgorithmError(f"malformed ring message from {before!r}")
    total, count = _PAIR.unpack(running)
    await peers.send(after, _PAIR.pack((total + mine.total) % MODULUS, (count + mine.count) % MODULUS))
    return RingSumOutput(role="relay", nodes=len(nodes))


RING_SUM = Algorithm(
    name="secure.ring_sum",
    description="sum and count of a column over a ring of nodes (masked; see its weakness)",
    params=RingSumParams,
    output=RingSumOutput,
    step=_local,
    protocol=_ring,
    local=RingFigures,
)
