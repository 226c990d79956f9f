"""What researchers and nodes seal to each other: the task request and the node's outcome.

These travel only inside sealed envelopes; the hub never sees them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TaskOutcome", "TaskRequest"]


class TaskRequest(BaseModel):
    """What a researcher seals to each node of a task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collaboration: str
    algorithm: str = Field(min_length=1, max_length=200)
    params: dict[str, object]
    # the nodes the researcher addressed: a multi-party step runs with exactly these,
    # so a hub cannot shrink or reshape the group a node computes with
    nodes: list[str] = Field(default_factory=list)


class TaskOutcome(BaseModel):
    """What a node seals back to the researcher: an output or an error message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str
    ok: bool
    output: dict[str, object] | None = None
    error: str | None = None
