"""Registered algorithms a node may run; found through the ``confide.algorithms`` entry points.

- ``_registry``: ``Algorithm`` (declared params and output; optional multi-party
  ``protocol``), ``DataContext``, ``PeerContext``, lookup
- ``stats``: ``stats.summary``
- ``ring``: ``secure.ring_sum``, the ring secure sum over sealed node-to-node messages
- ``federated_query``: ``query.sql``; ``federated_learning``: ``fl.train``, ``fl.evaluate``
"""

from confide.algorithms._registry import (
    ENTRY_POINT_GROUP,
    Algorithm,
    DataContext,
    PeerContext,
    TrainingCost,
    TrainingSpend,
    available,
    get_algorithm,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Algorithm",
    "DataContext",
    "PeerContext",
    "TrainingCost",
    "TrainingSpend",
    "available",
    "get_algorithm",
]
