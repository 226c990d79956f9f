"""The researcher SDK: ``Client`` submits sealed tasks and opens their results."""

from confide.client._client import Client, NodeResult, SecureSum, TaskResults, TaskState
from confide.client._jobspec import Job, load_job
from confide.client._query import QueryResult
from confide.client._statistics import PrivacySpent, StatisticResult

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
