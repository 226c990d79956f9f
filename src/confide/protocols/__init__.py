"""Secure-computation protocols: pure state machines and their building blocks, no I/O.

- ``secagg``: secure aggregation with dropouts and output pads (Bonawitz et al. 2017,
  SecAgg+ graphs of Bell et al. 2020), the node's and the server's state machines
- ``dp``: distributed discrete-Gaussian noise for secure sums and its accounting
"""

from confide.protocols.dp import (
    DistributedNoise,
    cdp_to_dp,
    distributed_epsilon,
    node_sigma,
    sample_discrete_gaussian,
)

__all__ = [
    "DistributedNoise",
    "cdp_to_dp",
    "distributed_epsilon",
    "node_sigma",
    "sample_discrete_gaussian",
]
