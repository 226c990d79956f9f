"""The JSON answers of the hub's researcher REST API (``/api``), shared by the hub and the client.

The hub declares them as its endpoints' ``response_model``; the researcher's client checks
every answer against the same model (:func:`~confide.wire.validate_as`), so a malformed
answer is a :class:`WireError` naming the field rather than a ``KeyError`` deep inside
the client. Unknown fields are ignored, so a hub may add fields without breaking older
clients. Sealed envelopes travel base64-encoded.

- ``GET /api/whoami``: :class:`WhoAmI`
- ``GET /api/collaborations/{id}``: :class:`CollaborationOut`
- ``POST /api/tasks``, ``GET /api/tasks/{id}``: :class:`TaskOut`
- ``GET /api/tasks``: ``list[TaskSummary]``
- ``GET /api/tasks/{id}/results``: ``list[ResultOut]``
- ``GET /api/tasks/{id}/aggregates/{label}``: binary, see :func:`~confide.wire.decode_aggregate`
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from confide.wire._status import RunStatus, TaskStatus

__all__ = [
    "CollaborationOut",
    "NodeOut",
    "ResultOut",
    "RunOut",
    "TaskOut",
    "TaskSummary",
    "WhoAmI",
]


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class NodeOut(_Answer):
    """A node of a collaboration: whether it is connected, and its certificate (PEM)."""

    id: str
    online: bool
    certificate: str


class CollaborationOut(_Answer):
    """A collaboration, with its nodes' certificates (check them against your CA)."""

    id: str
    name: str
    nodes: list[NodeOut]
    researchers: list[str]


class WhoAmI(_Answer):
    """Whom the bearer token names, and their collaborations."""

    id: str
    organisation: str
    collaborations: list[str]


class RunOut(_Answer):
    """One node's run of a task."""

    node: str
    status: RunStatus
    online: bool


class TaskOut(_Answer):
    """A task's state; ``version`` changes when a run finishes or a node comes or goes."""

    id: str
    collaboration: str
    researcher: str
    algorithm: str
    created_ms: int
    status: TaskStatus
    version: str
    runs: list[RunOut]


class TaskSummary(_Answer):
    """A task in a list of tasks."""

    id: str
    collaboration: str
    researcher: str
    algorithm: str
    created_ms: int


class ResultOut(_Answer):
    """A finished run's sealed result envelope, base64 (empty: the node refused before opening it)."""

    node: str
    status: RunStatus
    envelope: str
