"""The researcher SDK: seal a task to each node, submit it, follow it, open the results.

::

    from confide import Client

    with Client("kits/researchers/alice") as client:
        results = client.run("brain-study", "stats.summary",
                             {"table": "patients", "columns": ["age"]}, progress=True)
        for r in results:
            print(r.node, r.output)

Every node certificate the hub hands out is checked against the consortium CA in the
researcher's own kit before anything is sealed to it, and every result is opened only if
it is signed by the node it claims to come from.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from confide._errors import (
    AuthError,
    ConfideError,
    ConflictError,
    NotFoundError,
    TaskError,
    TransportError,
    WireError,
)
from confide.client._statistics import StatisticResult, check_statistic, finalise_statistic
from confide.crypto import MemoryReplayGuard, PublicParty, Role, verify_party_certificate
from confide.kit import Kit
from confide.protocols.secagg import remove_pads
from confide.protocols.secagg._frames import config_from_fields
from confide.wire import (
    Envelope,
    MessageKind,
    TaskOutcome,
    TaskRequest,
    open_envelope,
    seal_envelope,
)

if TYPE_CHECKING:
    from confide.client._query import QueryResult

__all__ = ["Client", "NodeResult", "SecureSum", "TaskResults", "TaskState"]

_FINISHED = ("completed", "failed")
NODES_TTL_S = 30.0
LONG_POLL_S = 20.0
RESULT_MAX_AGE_MS = 30 * 24 * 3600 * 1000  # results may be fetched up to 30 days later


@dataclass(frozen=True)
class TaskState:
    """A task as the hub reports it."""

    id: str
    status: str
    version: str
    runs: dict[str, str]
    online: dict[str, bool]

    @property
    def finished(self) -> bool:
        """Whether every run has finished."""
        return self.status in _FINISHED


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


class Client:
    """A researcher's connection to the hub, authenticated with their kit."""

    def __init__(self, kit: Kit | str | Path, *, timeout_s: float = 60.0) -> None:
        self.kit = kit if isinstance(kit, Kit) else Kit.load(kit)
        if self.kit.identity.role is not Role.RESEARCHER:
            raise AuthError(
                f"kit {self.kit.directory} belongs to a {self.kit.identity.role.value}, not a researcher"
            )
        self._http = httpx.Client(
            base_url=self.kit.hub_url,
            # the hub's certificate comes from the consortium CA; HTTPS_PROXY is honoured
            verify=self.kit.tls_context() if self.kit.hub_url.startswith("https://") else True,
            headers={"Authorization": f"Bearer {self.kit.token}"},
            timeout=httpx.Timeout(timeout_s),
        )
        self._peers: dict[str, PublicParty] = {}
        self._verified_pems: dict[bytes, PublicParty] = {}
        self._nodes: dict[str, tuple[float, dict[str, PublicParty]]] = {}
        # Results are bound to their task and node; re-reading one is legitimate, so opened
        # results are kept by envelope rather than refused as replays.
        self._opened: dict[bytes, NodeResult] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection."""
        self._http.close()

    # --- directory ----------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """Who the hub thinks we are, and our collaborations."""
        result: dict[str, Any] = self._request("GET", "/api/whoami")
        return result

    def nodes(self, collaboration: str, *, fresh: bool = False) -> dict[str, PublicParty]:
        """The collaboration's nodes, each certificate checked against our CA.

        The answer is kept for ``NODES_TTL_S`` seconds (``fresh=True`` asks the hub again).
        """
        cached = self._nodes.get(collaboration)
        if cached is not None and not fresh and time.monotonic() < cached[0]:
            return cached[1]
        info = self._request("GET", f"/api/collaborations/{collaboration}")
        nodes = {}
        for node in info["nodes"]:
            nodes[node["id"]] = self._verified(node["id"], node["certificate"].encode(), Role.NODE)
        self._nodes[collaboration] = (time.monotonic() + NODES_TTL_S, nodes)
        return nodes

    # --- tasks --------------------------------------------------------------------
    def submit(
        self, collaboration: str, algorithm: str, params: Mapping[str, Any], nodes: list[str] | None = None
    ) -> str:
        """Seal the request to each node and submit it; return the task id."""
        return self._submit(collaboration, algorithm, params, nodes).id

    def _submit(
        self, collaboration: str, algorithm: str, params: Mapping[str, Any], nodes: list[str] | None
    ) -> TaskState:
        members = self.nodes(collaboration)
        targets = nodes if nodes is not None else sorted(members)
        if any(n not in members for n in targets):
            members = self.nodes(collaboration, fresh=True)
        unknown = [n for n in targets if n not in members]
        if unknown:
            raise AuthError(
                f"not nodes of collaboration {collaboration!r}: {', '.join(unknown)}; "
                f"its nodes: {', '.join(sorted(members))}"
            )
        task_id = secrets.token_hex(12)
        request = TaskRequest(
            collaboration=collaboration, algorithm=algorithm, params=dict(params), nodes=sorted(targets)
        )
        plaintext = request.model_dump_json().encode()
        inputs = {}
        for node_id in targets:
            envelope = Envelope.new(MessageKind.TASK_INPUT, self.kit.party_id, node_id, task_id=task_id)
            sealed = seal_envelope(envelope, plaintext, self.kit.identity, members[node_id])
            inputs[node_id] = base64.b64encode(sealed.encode()).decode()
        body = {"id": task_id, "collaboration": collaboration, "algorithm": algorithm, "inputs": inputs}
        return _state(self._request("POST", "/api/tasks", json=body))

    def status(self, task_id: str, wait_s: float = 0.0, known: str = "") -> TaskState:
        """The task's state; with ``wait_s``, held by the hub until it changes from ``known``."""
        return _state(self._request("GET", f"/api/tasks/{task_id}", params={"wait": wait_s, "known": known}))

    def wait(
        self, task_id: str, timeout_s: float = 120.0, progress: bool = False, known: TaskState | None = None
    ) -> TaskState:
        """Block until every run finished; :class:`TaskError` names the nodes still missing."""
        deadline = time.monotonic() + timeout_s
        display = _Progress(task_id) if progress else None
        state = known or self.status(task_id)
        try:
            while not state.finished:
                if display is not None:
                    display.update(state)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TaskError(_timeout_message(state, timeout_s))
                state = self.status(task_id, wait_s=min(left, LONG_POLL_S), known=state.version)
            if display is not None:
                display.update(state)
        finally:
            if display is not None:
                display.close()
        return state

    def results(self, task_id: str, wait_s: float = 0.0) -> TaskResults:
        """Open every node's sealed result (signature, recipient, task binding checked).

        With ``wait_s`` the hub holds the call until every run finished (or the time is up).
        """
        rows = self._request("GET", f"/api/tasks/{task_id}/results", params={"wait": wait_s})
        opened = [self._open_result(task_id, row) for row in rows]
        return TaskResults(task_id, sorted(opened, key=lambda r: r.node))

    def secure_sum(self, task_id: str, label: str = "sum", wait_s: float = 0.0) -> SecureSum:
        """The total of the task's secure-aggregation round ``label``, its pads removed.

        The hub holds only the padded sum; each survivor's pad seed is sealed to this
        researcher, so the plain total exists only here. With ``wait_s``, waits for the
        round to end; :class:`TaskError` if it has not, or if it failed.
        """
        deadline = time.monotonic() + wait_s
        path = f"/api/tasks/{task_id}/aggregates/{label}"
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                response = self._http.get(path, params={"wait": min(left, LONG_POLL_S)})
            except httpx.TransportError as exc:
                raise TransportError(f"cannot reach the hub at {self.kit.hub_url}: {exc}") from None
            if response.status_code != 404 or left <= 0:
                break
        if response.status_code == 404:
            raise TaskError(
                f"secure sum {label!r} of task {task_id} has not finished (waited {wait_s:.0f} s)"
            )
        if response.status_code >= 400:
            raise _http_error(response)
        return self._unpad(task_id, label, response.content)

    def _unpad(self, task_id: str, label: str, body: bytes) -> SecureSum:
        size = int.from_bytes(body[:4], "big")
        try:
            meta = json.loads(body[4 : 4 + size])
            config = config_from_fields(meta["config"])
        except (ValueError, KeyError, ConfideError) as exc:
            raise WireError(f"the hub's answer for secure sum {label!r} is malformed ({exc})") from None
        if not meta.get("ok"):
            raise TaskError(f"secure sum {label!r} of task {task_id} failed: {meta.get('error')}")
        if config.session != f"{task_id}/{label}":
            raise WireError(f"the hub answered with round {config.session!r} for {task_id}/{label}")
        dtype = np.dtype(f"<u{config.bits // 8}")
        if len(body) - 4 - size != config.length * dtype.itemsize:
            raise WireError(f"the padded sum of {label!r} has the wrong size")
        padded = np.frombuffer(body[4 + size :], dtype=dtype).astype(dtype.newbyteorder("="))
        survivors = tuple(str(n) for n in meta["survivors"])
        if config.masked:
            parties = {n: self._node_key(n) for n in config.nodes}
            pads = {n: base64.b64decode(p) for n, p in meta["pads"].items()}
            total = remove_pads(config, padded, survivors, pads, me=self.kit.identity, parties=parties)
        else:
            total = padded  # an unmasked (baseline) round: the hub summed values in the clear
        return SecureSum(task_id, label, total, survivors, tuple(meta["dropped"]), config.bits)

    def _node_key(self, node_id: str) -> PublicParty:
        sender = self._peers.get(node_id)
        if sender is None:
            pem = self._request("GET", f"/api/parties/{node_id}/certificate", raw=True)
            sender = self._verified(node_id, pem.encode(), Role.NODE)
        return sender

    def statistic(self, task_id: str, wait_s: float = 60.0) -> StatisticResult:
        """The finalised result of a federated-statistics task (``stats.moments`` and the like)."""
        results = self.results(task_id)
        deadline = time.monotonic() + wait_s
        while not any(r.ok for r in results) and len(results.failed) < len(self.status(task_id).runs):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            results = self.results(task_id, wait_s=min(left, LONG_POLL_S))
        return finalise_statistic(self, task_id, results, wait_s=max(0.0, deadline - time.monotonic()))

    def run_statistic(
        self,
        collaboration: str,
        statistic: str,
        params: Mapping[str, Any],
        *,
        nodes: list[str] | None = None,
        timeout_s: float = 120.0,
    ) -> StatisticResult:
        """Submit a federated statistic and return it finalised, pads removed, small cells suppressed.

        The parameters and their fixed-point encoding are checked here first, so a
        configuration that could overflow is refused before anything is sent.
        """
        targets = nodes if nodes is not None else sorted(self.nodes(collaboration))
        check_statistic(statistic, params, targets)
        task_id = self.submit(collaboration, statistic, params, nodes)
        return self.statistic(task_id, wait_s=timeout_s)

    def run_query(
        self,
        collaboration: str,
        sql: str,
        schema: Mapping[str, Any],
        *,
        nodes: list[str] | None = None,
        sources: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
        decimals: int = 3,
        timeout_s: float = 120.0,
    ) -> QueryResult:
        """Run a federated SQL query and return its result rows, finalised here.

        The plan is compiled here first, so a query that would need general MPC is refused
        before anything is sent; each node compiles it again and runs only its local part.
        Groups with fewer rows than the nodes' ``min_count`` are withheld (None).

        Parameters
        ----------
        collaboration, sql, schema
            Where to run, the SELECT statement, and the federation schema it is written against.
        nodes
            Only these nodes (default: every node of the collaboration).
        sources
            Per node, which declared source stands for each schema table
            (``{"node-a": {"employees": {"file": "staff.csv"}}}``); default: the same name.
        decimals
            Fixed-point resolution of the secure sums.
        """
        from confide.client._query import run_query

        return run_query(
            self,
            collaboration,
            sql,
            schema,
            nodes=nodes,
            sources=sources,
            decimals=decimals,
            timeout_s=timeout_s,
        )

    def run(
        self,
        collaboration: str,
        algorithm: str,
        params: Mapping[str, Any],
        *,
        nodes: list[str] | None = None,
        timeout_s: float = 120.0,
        progress: bool = False,
    ) -> TaskResults:
        """Submit, wait and open the results in one call."""
        state = self._submit(collaboration, algorithm, params, nodes)
        if progress:
            self.wait(state.id, timeout_s, progress=True, known=state)
            return self.results(state.id)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            results = self.results(state.id, wait_s=max(0.0, min(left, LONG_POLL_S)))
            if len(results) == len(state.runs):
                return results
            if left <= 0:
                raise TaskError(_timeout_message(self.status(state.id), timeout_s))

    # --- internals ----------------------------------------------------------------
    def _verified(self, party_id: str, pem: bytes, role: Role) -> PublicParty:
        party = self._verified_pems.get(pem)
        if party is None or party.party_id != party_id or party.role is not role:
            party = verify_party_certificate(pem, self.kit.ca, expected_id=party_id, expected_role=role)
            self._verified_pems[pem] = party
        known = self._peers.get(party_id)
        if known is not None and known != party:
            raise AuthError(f"the hub now presents different keys for {party_id!r} than before; refusing")
        self._peers[party_id] = party
        return party

    def _open_result(self, task_id: str, row: Mapping[str, Any]) -> NodeResult:
        node_id = row["node"]
        if not row["envelope"]:
            return NodeResult(
                node_id,
                False,
                None,
                f"node {node_id!r} refused the task before opening it (see the node's log)",
            )
        raw = base64.b64decode(row["envelope"])
        opened = self._opened.get(raw)
        if opened is not None:
            return opened
        envelope = Envelope.decode(raw)
        if (
            envelope.sender != node_id
            or envelope.task_id != task_id
            or envelope.kind is not MessageKind.TASK_RESULT
        ):
            raise WireError(f"result filed for {node_id!r} is not that node's result for task {task_id}")
        sender = self._node_key(node_id)
        plaintext = open_envelope(
            envelope,
            me=self.kit.identity,
            sender=sender,
            guard=MemoryReplayGuard(),
            max_age_ms=RESULT_MAX_AGE_MS,
        )
        try:
            outcome = TaskOutcome.model_validate(json.loads(plaintext))
        except (ValidationError, ValueError):
            raise WireError(f"result from {node_id!r} is malformed") from None
        if outcome.node != node_id:
            raise WireError(f"result sealed by {node_id!r} claims to come from {outcome.node!r}")
        result = NodeResult(node_id, outcome.ok, outcome.output, outcome.error)
        self._opened[raw] = result
        return result

    def _request(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(
                f"cannot reach the hub at {self.kit.hub_url}: {exc}; is it running?"
            ) from None
        if response.status_code >= 400:
            raise _http_error(response)
        return response.text if raw else response.json()


def _state(data: Mapping[str, Any]) -> TaskState:
    return TaskState(
        id=data["id"],
        status=data["status"],
        version=data["version"],
        runs={r["node"]: r["status"] for r in data["runs"]},
        online={r["node"]: r["online"] for r in data["runs"]},
    )


def _http_error(response: httpx.Response) -> ConfideError:
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


def _timeout_message(state: TaskState, timeout_s: float) -> str:
    missing = [n for n, s in state.runs.items() if s not in _FINISHED]
    details = ", ".join(
        f"{n} ({'online' if state.online.get(n) else 'offline'}, {state.runs[n]})" for n in missing
    )
    return f"task {state.id} did not finish within {timeout_s:.0f} s; still waiting for: {details}"


class _Progress:
    """A rich progress bar of finished runs, on stderr."""

    def __init__(self, task_id: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]task {task.fields[task_id]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar = self._progress.add_task("", total=None, task_id=task_id[:8])
        self._progress.start()

    def update(self, state: TaskState) -> None:
        done = sum(1 for s in state.runs.values() if s in _FINISHED)
        waiting = [n for n, s in state.runs.items() if s not in _FINISHED]
        text = f"waiting for {', '.join(waiting)}" if waiting else state.status
        self._progress.update(self._bar, total=len(state.runs), completed=done, description=text)

    def close(self) -> None:
        self._progress.stop()
