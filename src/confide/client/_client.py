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
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from confide._errors import (
    AlgorithmError,
    AuthError,
    TaskError,
    TransportError,
    WireError,
)
from confide.algorithms import (
    Algorithm,
    Finalised,
    SecureRound,
    SecureTotals,
    get_algorithm,
    split_withheld,
)
from confide.algorithms.federated_query import QueryResult
from confide.algorithms.secure_stats import StatisticResult
from confide.client._parties import Parties
from confide.client._progress import Progress, timeout_message
from confide.client._results import (
    SecureSum,
    TaskResults,
    TaskState,
    http_error,
    parse_padded_sum,
    state_of,
)
from confide.client._totals import no_contribution, secure_totals, why_failed
from confide.crypto import PublicParty, Role
from confide.kit import Kit
from confide.protocols.secagg import remove_pads
from confide.wire import (
    CollaborationOut,
    Envelope,
    MessageKind,
    ResultOut,
    TaskRequest,
    WhoAmI,
    seal_envelope,
    validate_as,
)

__all__ = ["Client"]

NODES_TTL_S = 30.0
LONG_POLL_S = 20.0
_POLL_S = 5.0  # how often a round's wait looks whether every node has failed


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
        self._parties = Parties(self.kit)
        self._nodes: dict[str, tuple[float, dict[str, PublicParty]]] = {}

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
        answer = validate_as(WhoAmI, self._request("GET", "/api/whoami"), what="the hub's answer to whoami")
        return answer.model_dump()

    def nodes(self, collaboration: str, *, fresh: bool = False) -> dict[str, PublicParty]:
        """The collaboration's nodes, each certificate checked against our CA.

        The answer is kept for ``NODES_TTL_S`` seconds (``fresh=True`` asks the hub again).
        """
        cached = self._nodes.get(collaboration)
        if cached is not None and not fresh and time.monotonic() < cached[0]:
            return cached[1]
        info = validate_as(
            CollaborationOut,
            self._request("GET", f"/api/collaborations/{collaboration}"),
            what=f"the hub's answer about collaboration {collaboration!r}",
        )
        nodes = {}
        for node in info.nodes:
            nodes[node.id] = self._parties.verified(node.id, node.certificate.encode(), Role.NODE)
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
        return state_of(self._request("POST", "/api/tasks", json=body))

    def status(self, task_id: str, wait_s: float = 0.0, known: str = "") -> TaskState:
        """The task's state; with ``wait_s``, held by the hub until it changes from ``known``."""
        return state_of(
            self._request("GET", f"/api/tasks/{task_id}", params={"wait": wait_s, "known": known})
        )

    def wait(
        self, task_id: str, timeout_s: float = 120.0, progress: bool = False, known: TaskState | None = None
    ) -> TaskState:
        """Block until every run finished; :class:`TaskError` names the nodes still missing."""
        deadline = time.monotonic() + timeout_s
        display = Progress(task_id) if progress else None
        state = known or self.status(task_id)
        try:
            while not state.finished:
                if display is not None:
                    display.update(state)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TaskError(timeout_message(state, timeout_s))
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
        rows = validate_as(
            list[ResultOut],
            self._request("GET", f"/api/tasks/{task_id}/results", params={"wait": wait_s}),
            what=f"the hub's answer with the results of task {task_id}",
        )
        opened = [self._parties.open_result(task_id, row, self._node_key) for row in rows]
        return TaskResults(task_id, sorted(opened, key=lambda r: r.node))

    def secure_sum(self, task_id: str, label: str = "sum", wait_s: float = 0.0) -> SecureSum:
        """The total of the task's secure-aggregation round ``label``, its pads removed.

        The hub holds only the padded sum; each survivor's pad seed is sealed to this
        researcher, so the plain total exists only here. With ``wait_s``, waits for the
        round to end; :class:`TaskError` if it has not, or if it failed.
        """
        summed = self._fetch_sum(task_id, label, wait_s)
        if summed is None:
            raise TaskError(
                f"secure sum {label!r} of task {task_id} has not finished (waited {wait_s:.0f} s)"
            )
        return summed

    def _fetch_sum(self, task_id: str, label: str, wait_s: float) -> SecureSum | None:
        """The round's total, or None if it has not finished within ``wait_s``."""
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
            return None
        if response.status_code >= 400:
            raise http_error(response)
        return self._unpad(task_id, label, response.content)

    def _unpad(self, task_id: str, label: str, body: bytes) -> SecureSum:
        padded = parse_padded_sum(task_id, label, body)
        config, total = padded.config, padded.values
        if config.masked:
            parties = {n: self._node_key(n) for n in config.nodes}
            total = remove_pads(
                config, total, padded.survivors, padded.pads, me=self.kit.identity, parties=parties
            )
        # else: an unmasked (baseline) round: the hub summed values in the clear
        return SecureSum(
            task_id, label, total, padded.survivors, padded.dropped, config.bits, config.nodes, config.masked
        )

    def _node_key(self, node_id: str) -> PublicParty:
        sender = self._parties.known(node_id)
        if sender is None:
            pem = self._request("GET", f"/api/parties/{node_id}/certificate", raw=True)
            sender = self._parties.verified(node_id, pem.encode(), Role.NODE)
        return sender

    # --- algorithms finalised here ------------------------------------------------------
    def compute(
        self,
        collaboration: str,
        algorithm: str,
        params: Mapping[str, Any],
        *,
        nodes: list[str] | None = None,
        timeout_s: float = 120.0,
    ) -> Finalised:
        """Run an algorithm end to end and return its result, finalised here.

        The one path every algorithm with secure rounds takes: its parameters and the
        fixed-point encoding of each round are checked here first (an unknown algorithm,
        a bad field or an encoding that could overflow is refused before anything is
        sent); the task is sealed to each node; each round's total is fetched, its pads
        removed and decoded; the nodes' sealed reports are opened; and the algorithm's own
        pure ``finalise`` makes the result.

        Raises
        ------
        AlgorithmError
            Unknown algorithm, invalid parameters, or one without a finalisation (use :meth:`run`).
        TaskError
            No node contributed, or a round failed; every node's reason is given.
        """
        found = get_algorithm(algorithm)
        if found.finalise is None:
            raise AlgorithmError(
                f"{algorithm} returns per-node results, not one combined result; use Client.run"
            )
        parsed = found.parse_params(params)
        targets = sorted(nodes if nodes is not None else self.nodes(collaboration))
        found.secure_rounds(parsed, targets)
        task_id = self.submit(
            collaboration, algorithm, parsed.model_dump(mode="json", by_alias=True), targets
        )
        return self._finalised(task_id, found, parsed, targets, timeout_s)

    def finalise(self, task_id: str, wait_s: float = 60.0) -> Finalised:
        """The finalised result of a task submitted earlier, from its id alone.

        Works for algorithms whose nodes repeat the parameters in their sealed reports
        (statistics, queries); a training round is finalised by the program that ran it.
        Every report must name the algorithm the hub routed and the same parameters: one
        node (or a hub holding results back) cannot make the totals decode another way.
        """
        deadline = time.monotonic() + wait_s
        state = self.status(task_id)
        results = self.results(task_id)
        while not any(r.ok for r in results) and len(results.failed) < len(state.runs):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            results = self.results(task_id, wait_s=min(left, LONG_POLL_S))
        nodes = sorted(state.runs)
        reports = secure_totals(task_id, tuple(nodes), {}, {}, results).reports
        if not reports:
            raise TaskError(no_contribution(task_id, results))
        found = get_algorithm(state.algorithm)
        echoed = {json.dumps([r.algorithm, r.params], sort_keys=True) for r in reports.values()}
        first = next(iter(reports.values()))
        if len(echoed) > 1 or first.algorithm != found.name:
            raise TaskError(
                f"the nodes' reports of task {task_id} disagree on what ran ({found.name} was routed); "
                "its result cannot be finalised from them"
            )
        if first.params is None or found.finalise is None:
            raise TaskError(
                f"task {task_id} ran {found.name}, whose result only the program that submitted it "
                "can finalise (its parameters are not repeated in the nodes' reports)"
            )
        parsed = found.parse_params(first.params)
        return self._finalised(task_id, found, parsed, nodes, max(0.0, deadline - time.monotonic()))

    def _finalised(
        self, task_id: str, algorithm: Algorithm, params: Any, nodes: list[str], wait_s: float
    ) -> Finalised:
        deadline = time.monotonic() + wait_s
        totals, survivors, withheld = {}, {}, {}
        for secure_round in algorithm.secure_rounds(params, nodes):
            summed = self._await_sum(task_id, secure_round.label, nodes, deadline)
            _check_round(summed, secure_round, nodes)
            total, flags = split_withheld(secure_round, secure_round.encoding.decode(summed.total))
            totals[secure_round.label] = total
            if flags is not None:
                withheld[secure_round.label] = flags
            survivors[secure_round.label] = summed.survivors
        results = self.results(task_id, wait_s=max(0.0, deadline - time.monotonic()))
        sums: SecureTotals = secure_totals(task_id, tuple(nodes), totals, survivors, results, withheld)
        if algorithm.finalise is None:  # pragma: no cover - callers check
            raise AlgorithmError(f"{algorithm.name} has no finalisation")
        return algorithm.finalise(params, sums)

    def _await_sum(self, task_id: str, label: str, nodes: list[str], deadline: float) -> SecureSum:
        """A round's total; fails as soon as every node has failed, rather than at the deadline."""
        while True:
            try:
                summed = self._fetch_sum(task_id, label, min(_POLL_S, max(0.0, deadline - time.monotonic())))
            except TaskError as exc:
                raise TaskError(why_failed(self.results(task_id), str(exc))) from None
            if summed is not None:
                return summed
            results = self.results(task_id)
            if len(results.failed) == len(nodes):
                raise TaskError(no_contribution(task_id, results))
            if time.monotonic() >= deadline:
                message = f"secure sum {label!r} of task {task_id} has not finished in time"
                raise TaskError(why_failed(results, message))

    def statistic(self, task_id: str, wait_s: float = 60.0) -> StatisticResult:
        """The finalised result of a federated-statistics task (``stats.moments`` and the like)."""
        result = self.finalise(task_id, wait_s)
        if not isinstance(result, StatisticResult):
            raise TaskError(f"task {task_id} is not a federated statistic")
        return result

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
        if not statistic.startswith("stats.") or statistic == "stats.summary":
            raise AlgorithmError(f"{statistic} is not a federated statistic (stats.moments and the like)")
        result = self.compute(collaboration, statistic, params, nodes=nodes, timeout_s=timeout_s)
        if not isinstance(result, StatisticResult):
            raise AlgorithmError(f"{statistic} is not a federated statistic")
        return result

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
        params = {"sql": sql, "schema": dict(schema), "decimals": decimals, "sources": dict(sources or {})}
        result = self.compute(collaboration, "query.sql", params, nodes=nodes, timeout_s=timeout_s)
        if not isinstance(result, QueryResult):  # pragma: no cover - query.sql finalises to one
            raise TaskError("query.sql did not finalise to rows")
        return result

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
                raise TaskError(timeout_message(self.status(state.id), timeout_s))

    # --- internals ----------------------------------------------------------------
    def _request(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransportError(
                f"cannot reach the hub at {self.kit.hub_url}: {exc}; is it running?"
            ) from None
        if response.status_code >= 400:
            raise http_error(response)
        return response.text if raw else response.json()


def _check_round(summed: SecureSum, declared: SecureRound, nodes: list[str]) -> None:
    """The hub's round must be the one the task declared: masked, of its length, width and nodes."""
    if (
        not summed.masked
        or summed.total.size != declared.summed_length
        or summed.bits != declared.encoding.bits
        or sorted(summed.nodes) != sorted(nodes)
    ):
        raise WireError(
            f"the hub answered secure sum {declared.label!r} with a round other than the task declared "
            "(unmasked, or another length, width or set of nodes); refusing its total"
        )
