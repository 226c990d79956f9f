"""The researcher SDK: ``Client`` submits sealed tasks and opens their results."""

from confide.client._client import Client, NodeResult, TaskResults, TaskState

__all__ = ["Client", "NodeResult", "TaskResults", "TaskState"]
