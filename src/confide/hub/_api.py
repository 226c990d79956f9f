"""The researcher REST API (``/api``): bearer credentials from the kit, JSON in and out.

Sealed envelopes travel base64-encoded; the hub stores and returns them untouched. The
answers are ``confide.wire``'s models (``TaskOut``, ``ResultOut``, ...), which the
researcher's client checks them against; a round's outcome is ``wire``'s binary
``encode_aggregate``. Every call is written to the audit log by the middleware in ``_app``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from confide._errors import AuthError, NotFoundError, StoreError, WireError
from confide.hub._directory import Directory
from confide.hub._records import ResearcherRecord, Task
from confide.hub._service import HubService, TaskView
from confide.kit import token_hash
from confide.wire import (
    AggregateMeta,
    CollaborationOut,
    NodeOut,
    ResultOut,
    RunOut,
    TaskOut,
    TaskSummary,
    WhoAmI,
    encode_aggregate,
    validate_as,
)

__all__ = ["router"]

router = APIRouter(prefix="/api")
_ID = r"^[A-Za-z0-9._-]{1,100}$"


class SubmitTask(BaseModel):
    """A task: which collaboration and algorithm, and one sealed input per node (base64)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID)
    collaboration: str = Field(pattern=_ID)
    algorithm: str = Field(min_length=1, max_length=200)
    inputs: dict[str, str] = Field(min_length=1, max_length=10_000)


def _service(request: Request) -> HubService:
    service: HubService = request.app.state.service
    return service


async def researcher(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> ResearcherRecord:
    """Authenticate the bearer token of a researcher."""
    match = re.fullmatch(r"Bearer (\S+)", authorization or "")
    if match is None:
        raise AuthError("missing credentials: send 'Authorization: Bearer <token from your kit>'")
    directory: Directory = request.app.state.directory
    found = await directory.researcher_by_token_hash(token_hash(match.group(1)))
    if found is None:
        raise AuthError("credentials refused: the token matches no researcher; check your kit")
    request.state.actor = found.id
    return found


Researcher = Annotated[ResearcherRecord, Depends(researcher)]
Service = Annotated[HubService, Depends(_service)]
TaskId = Annotated[str, Path(pattern=_ID)]


@router.get("/whoami", response_model=WhoAmI)
async def whoami(me: Researcher, request: Request) -> WhoAmI:
    """Who the credentials belong to and their collaborations."""
    directory: Directory = request.app.state.directory
    collabs = await directory.collaborations_of(me.id)
    return WhoAmI(id=me.id, organisation=me.organisation_id, collaborations=[c.id for c in collabs])


@router.get("/collaborations/{collaboration_id}", response_model=CollaborationOut)
async def collaboration(
    collaboration_id: TaskId, me: Researcher, service: Service, request: Request
) -> CollaborationOut:
    """A collaboration with its nodes' certificates (check them against your CA)."""
    collab = await service.collaboration(me, collaboration_id)
    directory: Directory = request.app.state.directory
    nodes = []
    for node_id in collab.node_ids:
        cert = await directory.certificate(node_id) or b""
        nodes.append(
            NodeOut(
                id=node_id,
                online=request.app.state.sessions.online(node_id),
                certificate=cert.decode(),
            )
        )
    return CollaborationOut(
        id=collab.id, name=collab.name, nodes=nodes, researchers=list(collab.researcher_ids)
    )


@router.get("/parties/{party_id}/certificate", response_class=PlainTextResponse)
async def certificate(party_id: TaskId, me: Researcher, request: Request) -> str:
    """A party's certificate (PEM)."""
    directory: Directory = request.app.state.directory
    cert = await directory.certificate(party_id)
    if cert is None:
        raise NotFoundError(f"no party {party_id!r}")
    return cert.decode()


@router.post("/tasks", response_model=TaskOut, status_code=201)
async def submit(body: SubmitTask, me: Researcher, service: Service) -> TaskOut:
    """Submit a task with sealed per-node inputs."""
    inputs = {}
    for node_id, b64 in body.inputs.items():
        try:
            inputs[node_id] = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise WireError(f"input for node {node_id!r} is not valid base64") from None
    view = await service.submit(me, body.collaboration, body.algorithm, inputs, body.id)
    return _task_out(view)


@router.get("/tasks", response_model=list[TaskSummary])
async def tasks(
    me: Researcher, service: Service, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[TaskSummary]:
    """Tasks of your collaborations, newest first."""
    return [_summary(t) for t in await service.tasks(me, limit)]


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def task(
    task_id: TaskId,
    me: Researcher,
    service: Service,
    request: Request,
    wait: Annotated[float, Query(ge=0)] = 0.0,
    known: str = "",
) -> TaskOut:
    """A task's state; ``wait`` holds the call until it changes from ``known`` (long-poll)."""
    wait = min(wait, request.app.state.settings.max_wait_s)
    return _task_out(await service.view(me, task_id, wait, known))


@router.get("/tasks/{task_id}/results", response_model=list[ResultOut])
async def results(
    task_id: TaskId,
    me: Researcher,
    service: Service,
    request: Request,
    wait: Annotated[
        float, Query(ge=0, description="Hold up to this many seconds until every run finished.")
    ] = 0.0,
) -> list[ResultOut]:
    """The sealed per-node results of a task (finished runs only)."""
    wait = min(wait, request.app.state.settings.max_wait_s)
    return [
        ResultOut(node=r.node_id, status=r.status, envelope=base64.b64encode(r.envelope).decode())
        for r in await service.results(me, task_id, wait)
    ]


@router.get(
    "/tasks/{task_id}/aggregates/{label}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def aggregate(
    task_id: TaskId,
    label: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
    me: Researcher,
    service: Service,
    request: Request,
    wait: Annotated[
        float, Query(ge=0, description="Hold up to this many seconds until the round ends.")
    ] = 0.0,
) -> Response:
    """The outcome of secure-aggregation round ``label``: padded sum, survivors, sealed pads.

    Binary (``confide.wire.encode_aggregate``): a 4-byte big-endian length, that many
    bytes of JSON (an ``AggregateMeta``: ``ok``, ``error``, ``bits``, ``length``,
    ``config``, ``survivors``, ``dropped``, ``pads``), then the padded total as
    little-endian integers. 404 until the round has ended.
    """
    wait = min(wait, request.app.state.settings.max_wait_s)
    found = await service.aggregate(me, task_id, f"{task_id}/{label}", wait)
    if found is None:
        raise NotFoundError(f"round {label!r} of task {task_id} has not ended (or never started)")
    try:  # the store holds what the hub wrote; reading it back checks it (a bad one is the hub's fault)
        stored = json.loads(found.meta)
        meta = validate_as(AggregateMeta, stored, what=f"the stored outcome of round {label!r}")
        body = encode_aggregate(meta, found.total)
    except (ValueError, WireError) as exc:
        raise StoreError(f"task {task_id}: {exc}") from None
    return Response(body, media_type="application/octet-stream")


def _summary(t: Task) -> TaskSummary:
    return TaskSummary(
        id=t.id,
        collaboration=t.collaboration_id,
        researcher=t.researcher_id,
        algorithm=t.algorithm,
        created_ms=t.created_ms,
    )


def _task_out(view: TaskView) -> TaskOut:
    t = view.task
    return TaskOut(
        id=t.id,
        collaboration=t.collaboration_id,
        researcher=t.researcher_id,
        algorithm=t.algorithm,
        created_ms=t.created_ms,
        status=view.status,
        version=view.version,
        runs=[RunOut(node=r.node_id, status=r.status, online=view.online[r.node_id]) for r in view.runs],
    )
