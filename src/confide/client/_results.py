"""What the hub and the nodes tell the researcher about a task: its state, results and secure sums.

The hub's answers are checked against ``confide.wire``'s models (``TaskOut``,
``decode_aggregate``), the same the hub answers with: a malformed answer is a
:class:`WireError` naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from confide._errors import (
    AuthError,
    ConfideError,
    ConflictError,
    NotFoundError,
    ProtocolError,
    TaskError,
    WireError,
)
from confide.protocols.secagg import SecAggConfig, config_from_fields
from confide.wire import RunStatus, TaskOut, TaskStatus, decode_aggregate, validate_as

__all__ = [
    "NodeResult",
    "PaddedSum",
    "SecureSum",
    "TaskResults",
    "TaskState",
    "http_error",
    "parse_padded_sum",
    "state_of",
]


@dataclass(frozen=True)
class TaskState:
    """A task as the hub reports it."""

    id: str
    status: TaskStatus
    version: str
    algorithm: str
    runs: dict[str, RunStatus]
    online: dict[str, bool]

    @property
    def finished(self) -> bool:
        """Whether every run has finished."""
        return self.status.finished


@dataclass(frozen=True)
class NodeResult:
    """One node's opened result."""

    node: str
    ok: bool
    output: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class TaskResults:
    """All results of a task, in node order."""

    task_id: str
    results: list[NodeResult]

    def __iter__(self) -> Iterator[NodeResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[NodeResult]:
        """Results of nodes that reported an error."""
        return [r for r in self.results if not r.ok]

    def raise_for_errors(self) -> TaskResults:
        """Raise :class:`TaskError` listing every node's error, if any failed."""
        if self.failed:
            lines = "; ".join(f"{r.node}: {r.error}" for r in self.failed)
            raise TaskError(f"task {self.task_id} failed on {len(self.failed)} node(s): {lines}")
        return self


@dataclass(frozen=True)
class SecureSum:
    """The plain total of a secure-aggregation round, as only the researcher sees it.

    ``total`` is in Z_2^bits (decode it with the fixed-point encoding the nodes used);
    ``survivors`` are the nodes whose inputs it sums, ``dropped`` those that left the
    round after dealing their shares; ``nodes`` every node the round was configured for,
    and ``masked`` whether it was a masked round at all (only diagnostics may not be).
    """

    task_id: str
    label: str
    total: npt.NDArray[np.unsignedinteger[Any]]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    bits: int
    nodes: tuple[str, ...] = ()
    masked: bool = True


def state_of(data: object) -> TaskState:
    """The hub's JSON answer about a task (a ``TaskOut``) as a :class:`TaskState`."""
    task = validate_as(TaskOut, data, what="the hub's answer about a task")
    return TaskState(
        id=task.id,
        status=task.status,
        algorithm=task.algorithm,
        version=task.version,
        runs={r.node: r.status for r in task.runs},
        online={r.node: r.online for r in task.runs},
    )


@dataclass(frozen=True)
class PaddedSum:
    """The hub's answer for one round: its configuration, the padded total and the pad seeds."""

    config: SecAggConfig
    values: npt.NDArray[np.unsignedinteger[Any]]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    pads: dict[str, bytes]


def parse_padded_sum(task_id: str, label: str, body: bytes) -> PaddedSum:
    """Parse the hub's ``/aggregates/{label}`` body (``confide.wire.decode_aggregate``).

    Raises
    ------
    WireError
        The answer is malformed (the error names the field), or is for another round.
    TaskError
        The round failed; the hub's reason is given.
    """
    try:
        meta, total = decode_aggregate(body)
        config = config_from_fields(meta.config)
    except (WireError, ProtocolError) as exc:
        raise WireError(f"the hub's answer for secure sum {label!r} of task {task_id}: {exc}") from None
    if config.session != f"{task_id}/{label}":
        raise WireError(f"the hub answered with round {config.session!r} for {task_id}/{label}")
    if not meta.ok:
        raise TaskError(f"secure sum {label!r} of task {task_id} failed: {meta.error}")
    dtype = np.dtype(f"<u{config.bits // 8}")
    values = np.frombuffer(total, dtype=dtype).astype(dtype.newbyteorder("="))
    return PaddedSum(config, values, meta.survivors, meta.dropped, dict(meta.pads))


def http_error(response: httpx.Response) -> ConfideError:
    """The hub's error answer as the matching :class:`ConfideError`."""
    try:
        message = str(response.json().get("message") or response.text)
    except ValueError:
        message = response.text or response.reason_phrase
    kind: type[ConfideError] = {
        401: AuthError,
        403: AuthError,
        404: NotFoundError,
        409: ConflictError,
        400: WireError,
        422: WireError,
    }.get(response.status_code, ConfideError)
    return kind(f"hub: {message}")
