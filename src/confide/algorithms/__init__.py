"""Registered algorithms: what a node may run, and how the researcher finalises it.

Found through the ``confide.algorithms`` entry points. Layout, in dependency order:

- ``_context``: what a node half sees: ``DataContext`` (tables, in the worker),
  ``PeerContext`` (peers, secure sums, privacy accounting, in the agent)
- ``_result``: ``Finalised``, what a researcher half returns, and ``ResultTable``
- ``_secure``: the one secure-sum driver (``contribute``): ``SecureRound``,
  ``LocalFigures``, ``SecureReport``, ``SecureTotals``
- ``_registry``: ``Algorithm`` (both halves declared), lookup
- ``stats``: ``stats.summary``; ``secure_stats``: ``stats.moments`` and the other secure
  statistics; ``federated_query``: ``query.sql``; ``federated_learning``: ``fl.train``,
  ``fl.evaluate``; ``ring``: ``secure.ring_sum``; ``diagnostics``, ``secure_sum_check``
"""

from confide.algorithms._context import (
    MAIN_STEP,
    DataContext,
    PeerContext,
    TableSource,
    TrainingCost,
    TrainingSpend,
)
from confide.algorithms._registry import ENTRY_POINT_GROUP, Algorithm, Step, available, get_algorithm
from confide.algorithms._result import Finalised, ResultTable
from confide.algorithms._secure import (
    CellRows,
    LocalFigures,
    SecureReport,
    SecureRound,
    SecureTotals,
    contribute,
    decode_vector,
    encode_vector,
    require_rows,
    split_withheld,
    withhold_small_cells,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAIN_STEP",
    "Algorithm",
    "CellRows",
    "DataContext",
    "Finalised",
    "LocalFigures",
    "PeerContext",
    "ResultTable",
    "SecureReport",
    "SecureRound",
    "SecureTotals",
    "Step",
    "TableSource",
    "TrainingCost",
    "TrainingSpend",
    "available",
    "contribute",
    "decode_vector",
    "encode_vector",
    "get_algorithm",
    "require_rows",
    "split_withheld",
    "withhold_small_cells",
]
