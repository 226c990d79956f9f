"""What the hub and the nodes tell the researcher about a task: its state, results and secure sums."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from confide._errors import AuthError, ConfideError, ConflictError, NotFoundError, TaskError, WireError
from confide.client._progress import FINISHED
from confide.protocols.secagg import SecAggConfig, config_from_fields

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
    status: str
    version: str
    algorithm: str
    runs: dict[str, str]
    online: dict[str, bool]

    @property
    def finished(self) -> bool:
        """Whether every run has finished."""
        return self.status in FINISHED


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
    round after dealing their shares.
    """

    task_id: str
    label: str
    total: npt.NDArray[np.unsignedinteger[Any]]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    bits: int


def state_of(data: Mapping[str, Any]) -> TaskState:
    return TaskState(
        id=data["id"],
        status=data["status"],
        algorithm=str(data.get("algorithm", "")),
        version=data["version"],
        runs={r["node"]: r["status"] for r in data["runs"]},
        online={r["node"]: r["online"] for r in data["runs"]},
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
    """Parse the hub's ``/aggregates/{label}`` body (4-byte length, JSON, the padded vector)."""
    size = int.from_bytes(body[:4], "big")
    try:
        meta = json.loads(body[4 : 4 + size])
        config = config_from_fields(meta["config"])
        if not meta.get("ok"):
            raise TaskError(f"secure sum {label!r} of task {task_id} failed: {meta.get('error')}")
        survivors = tuple(str(n) for n in meta["survivors"])
        dropped = tuple(str(n) for n in meta["dropped"])
        pads = {str(n): base64.b64decode(p) for n, p in meta.get("pads", {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise WireError(f"the hub's answer for secure sum {label!r} is malformed ({exc})") from None
    except ConfideError as exc:
        if isinstance(exc, TaskError):
            raise
        raise WireError(f"the hub's answer for secure sum {label!r} is malformed ({exc})") from None
    if config.session != f"{task_id}/{label}":
        raise WireError(f"the hub answered with round {config.session!r} for {task_id}/{label}")
    dtype = np.dtype(f"<u{config.bits // 8}")
    if len(body) - 4 - size != config.length * dtype.itemsize:
        raise WireError(f"the padded sum of {label!r} has the wrong size")
    values = np.frombuffer(body[4 + size :], dtype=dtype).astype(dtype.newbyteorder("="))
    return PaddedSum(config, values, survivors, dropped, pads)


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
