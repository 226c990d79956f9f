"""The researcher SDK: ``Client`` submits sealed tasks and opens their results."""

from confide.client._client import Client, NodeResult, SecureSum, TaskResults, TaskState
from confide.client._statistics import PrivacySpent, StatisticResult

__all__ = ["Client", "NodeResult", "PrivacySpent", "SecureSum", "StatisticResult", "TaskResults", "TaskState"]
