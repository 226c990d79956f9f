"""Registered algorithms a node may run; found through the ``confide.algorithms`` entry points.

- ``_registry``: ``Algorithm`` (declared params and output), ``DataContext``, lookup
- ``stats``: ``stats.summary`` and, later, the secure-aggregation statistics
"""

from confide.algorithms._registry import (
    ENTRY_POINT_GROUP,
    Algorithm,
    DataContext,
    available,
    get_algorithm,
)

__all__ = ["ENTRY_POINT_GROUP", "Algorithm", "DataContext", "PeerContext", "available", "get_algorithm"]
