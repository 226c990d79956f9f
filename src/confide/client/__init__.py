"""The researcher SDK: ``Client`` submits sealed tasks, opens their results and finalises them.

- ``_results``: a task's state, its per-node results and a round's secure sum
- ``_progress``: following a task (progress bar, time-out message)
- ``_totals``: the nodes' sealed reports made into an algorithm's ``SecureTotals``
- ``_client``: ``Client``, one generic run path (``compute``) for every algorithm
- ``_jobspec``: C2D job specs
"""

from confide.algorithms.federated_query import QueryResult
from confide.algorithms.secure_stats import PrivacySpent, StatisticResult
from confide.client._client import Client
from confide.client._jobspec import Job, load_job
from confide.client._results import NodeResult, SecureSum, TaskResults, TaskState

__all__ = [
    "Client",
    "Job",
    "NodeResult",
    "PrivacySpent",
    "QueryResult",
    "SecureSum",
    "StatisticResult",
    "TaskResults",
    "TaskState",
    "load_job",
]
