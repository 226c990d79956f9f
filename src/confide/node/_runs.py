"""The node's run executor: open a run's sealed input, check policy, run it, seal and report the outcome.

Steps of one run:

1. the hub pushes a RUN frame: routing facts and the researcher's certificate, with the
   task input sealed to this node attached;
2. the certificate is checked against the consortium CA (a hub that substitutes a key is
   caught here) and the input is opened (recipient, freshness, AEAD, signature, replay);
3. the sealed request must agree with the hub's routing facts, and the policy must allow
   collaboration, researcher and algorithm;
4. a per-node algorithm's step runs in a worker process; a multi-party algorithm runs in
   the node with its :class:`~confide.node._peers.TaskPeers`; its output is validated
   against its declaration, and refused whole if a table it read requires differential
   privacy and no differentially private release covered it (a per-node result never can);
5. the outcome (output or error message) is sealed to the researcher and sent as a final
   RUN_STATUS, kept and resent by the hub link until the hub acknowledges it. A run the
   hub delivers again is answered with the same result, not run twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

from pydantic import ValidationError

from confide._errors import ConfideError, ProtocolError, WireError
from confide.algorithms import MAIN_STEP, Algorithm, get_algorithm
from confide.crypto import MemoryReplayGuard, PublicParty, Role, verify_party_certificate
from confide.kit import Kit
from confide.node._budget import PrivacyBudget
from confide.node._channel import PeerChannel
from confide.node._config import NodeConfig
from confide.node._link import HubLink
from confide.node._peers import StepRunner, TaskFacts, TaskPeers
from confide.node._policy import check_plain_release, check_policy
from confide.node._sums import SecureSums
from confide.node._worker import StepOutcome
from confide.wire import (
    HUB,
    Envelope,
    RunAssignment,
    RunStatus,
    RunStatusUpdate,
    TaskOutcome,
    TaskRequest,
    encode_control,
    open_envelope,
    seal_envelope,
)
from confide.wire import MessageKind as Kind

__all__ = ["RunExecutor"]

log = logging.getLogger("confide.node")
EARLY_KEPT = 1_000  # peer messages held per task until this node starts its part
EARLY_TASKS_KEPT = 100  # tasks whose peer messages are held before this node starts them
FINISHED_KEPT = 10_000  # recent results kept to answer a redelivered run without rerunning it


class RunExecutor:
    """Runs what the hub assigns to this node, one background task per run."""

    def __init__(
        self, config: NodeConfig, kit: Kit, link: HubLink, steps: StepRunner, budget: PrivacyBudget
    ) -> None:
        self._config = config
        self._kit = kit
        self._link = link
        self._steps = steps
        self._budget = budget
        self._guard = MemoryReplayGuard()
        self._researchers: dict[bytes, PublicParty] = {}
        self._finished: OrderedDict[str, bytes] = OrderedDict()
        self._active: set[str] = set()
        self._limit = asyncio.Semaphore(config.workers)
        self._tasks: dict[str, TaskPeers] = {}
        self._early: dict[str, list[Envelope]] = {}
        self._done: OrderedDict[str, None] = OrderedDict()  # tasks whose part here is over
        self._running: set[asyncio.Task[object]] = set()

    @property
    def node_id(self) -> str:
        """This node's party id."""
        return self._kit.party_id

    def start(self, assignment: RunAssignment, attachment: bytes) -> None:
        """Run ``assignment`` in the background, unless it is running or already answered."""
        run_id = assignment.run_id
        if run_id in self._active:
            return
        finished = self._finished.get(run_id)
        if finished is not None:
            # Redelivered after a lost acknowledgement: send the same result again.
            self._link.send_quietly(finished)
            return
        self._active.add(run_id)
        self._background(self._process(assignment, attachment), f"run-{run_id}")

    def on_peer(self, envelope: Envelope) -> None:
        """A sealed message or stream chunk from another node of one of this node's tasks."""
        task = self._tasks.get(envelope.task_id)
        if task is not None:
            _deliver_peer(task.channel, envelope)
        elif envelope.task_id not in self._done:
            # This node has not started its part of the task yet: keep it for then, within
            # bounds. Beyond them it is not acknowledged, so the hub keeps it in its mailbox
            # and hands it over again after a reconnect rather than it being lost.
            waiting = self._early.get(envelope.task_id)
            if waiting is None and len(self._early) >= EARLY_TASKS_KEPT:
                return
            waiting = self._early.setdefault(envelope.task_id, [])
            if len(waiting) >= EARLY_KEPT:
                return
            waiting.append(envelope)
        # else: this node's part of the task is over; the message can serve nothing
        self._link.acknowledge(envelope)

    def on_aggregation(self, envelope: Envelope) -> None:
        """A secure-aggregation message from the hub for one of this node's tasks."""
        task = self._tasks.get(envelope.task_id)
        try:
            if task is None:
                raise ProtocolError(
                    f"an aggregation message for task {envelope.task_id}, which is not running"
                )
            task.sums.deliver_aggregation(envelope)
        except ConfideError as exc:
            log.warning("aggregation message from the hub dropped: %s", exc)

    def cancel(self) -> None:
        """Stop every run in progress."""
        for task in list(self._running):
            task.cancel()

    def _background(self, work: Coroutine[Any, Any, object], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _process(self, assignment: RunAssignment, attachment: bytes) -> None:
        researcher: PublicParty | None = None
        try:
            researcher = self._researcher(assignment)
            request = self._open_request(assignment, attachment, researcher)
        except ConfideError as exc:
            log.error("run %s refused: %s", assignment.run_id, exc)
            if researcher is None:
                # No verified researcher key: nobody to seal to; the hub learns only the kind.
                await self._final(assignment, RunStatus.FAILED, b"", reason=f"{type(exc).__name__}: {exc}")
            else:
                error = f"node {self.node_id!r} refused the task input: {exc}"
                sealed = self._seal(assignment, researcher, StepOutcome(None, error))
                await self._final(assignment, RunStatus.FAILED, sealed)
            return
        outcome = await self._outcome(assignment, request)
        log.info(
            "run %s of %s: %s",
            assignment.run_id,
            request.algorithm,
            "failed" if outcome.error else "completed",
        )
        status = RunStatus.FAILED if outcome.error else RunStatus.COMPLETED
        await self._final(assignment, status, self._seal(assignment, researcher, outcome))

    async def _outcome(self, assignment: RunAssignment, request: TaskRequest) -> StepOutcome:
        """Steps 3 and 4: the policy, then the algorithm; any failure becomes the outcome's reason."""
        try:
            check_policy(
                self._config.policy,
                self.node_id,
                collaboration=request.collaboration,
                researcher=assignment.researcher_id,
                algorithm=request.algorithm,
            )
            await self._status(assignment, RunStatus.RUNNING)
            algorithm = get_algorithm(request.algorithm)
            if not algorithm.multiparty:
                return self._plain_release(
                    request.algorithm, await self.run(request.algorithm, request.params)
                )
            return await self._run_protocol(assignment, algorithm, request.params, request.nodes)
        except ConfideError as exc:
            return StepOutcome(None, str(exc))
        except Exception as exc:  # a bug must end the run with a reason, not leave it hanging
            log.exception("run %s of %s failed", assignment.run_id, request.algorithm)
            return StepOutcome(
                None, f"{request.algorithm} failed with {type(exc).__name__}; the node's log has the details"
            )

    async def run(self, algorithm: str, params: dict[str, object], step: str = MAIN_STEP) -> StepOutcome:
        """Run one step in a worker, at most ``config.workers`` at a time (a :class:`StepRunner`)."""
        async with self._limit:
            return await self._steps.run(algorithm, params, step)

    def _plain_release(self, algorithm: str, outcome: StepOutcome) -> StepOutcome:
        """A per-node result, or its refusal if a table it read requires differential privacy.

        Checked whether the step succeeded or not: its own error could say something of
        the table, and nothing derived from such a table leaves without noise.
        """
        check_plain_release(self._config.policy, self.node_id, algorithm=algorithm, tables=outcome.tables)
        return outcome

    async def _run_protocol(
        self, assignment: RunAssignment, algorithm: Algorithm, params: dict[str, object], nodes: list[str]
    ) -> StepOutcome:
        task = self._task_peers(assignment, algorithm, nodes)
        self._tasks[assignment.task_id] = task
        for early in self._early.pop(assignment.task_id, []):
            _deliver_peer(task.channel, early)
        try:
            output = await algorithm.run_protocol(task, params)
            task.check_leaving("its result")
            return StepOutcome(output, None, task.tables_read)
        except ConfideError:
            raise
        except Exception as exc:  # an algorithm's own bug: report it, keep the node
            log.exception("algorithm %s failed", algorithm.name)
            return StepOutcome(
                None, f"{algorithm.name} failed with {type(exc).__name__}; the node's log has the details"
            )
        finally:
            del self._tasks[assignment.task_id]

    def _task_peers(self, assignment: RunAssignment, algorithm: Algorithm, nodes: list[str]) -> TaskPeers:
        if sorted({self.node_id, *assignment.peers}) != sorted(nodes):
            raise WireError(
                f"the hub offered peers {sorted(assignment.peers)} but the researcher addressed "
                f"{sorted(nodes)}; refusing to compute with a group the researcher did not choose"
            )
        peers = {
            node: verify_party_certificate(
                pem.encode(), self._kit.ca, expected_id=node, expected_role=Role.NODE
            )
            for node, pem in assignment.peers.items()
        }
        identity = self._kit.identity
        channel = PeerChannel(
            task_id=assignment.task_id,
            identity=identity,
            peers=peers,
            sender=self._link,
            guard=self._guard,
            max_age_ms=int(self._config.input_max_age_s * 1000),
        )
        sums = SecureSums(
            task_id=assignment.task_id,
            algorithm=algorithm.name,
            identity=identity,
            peers=peers,
            researcher=self._researcher(assignment),
            hub=self._link,
        )
        facts = TaskFacts(
            assignment.task_id, algorithm.name, assignment.researcher_id, self._config.policy.min_count
        )
        return TaskPeers(
            facts, channel=channel, sums=sums, steps=self, budget=self._budget, policy=self._config.policy
        )

    def _seal(self, assignment: RunAssignment, researcher: PublicParty, outcome: StepOutcome) -> bytes:
        result = TaskOutcome(
            node=self.node_id, ok=outcome.error is None, output=outcome.output, error=outcome.error
        )
        envelope = Envelope.new(
            Kind.TASK_RESULT, self.node_id, researcher.party_id, task_id=assignment.task_id
        )
        return seal_envelope(
            envelope, result.model_dump_json().encode(), self._kit.identity, researcher
        ).encode()

    def _researcher(self, assignment: RunAssignment) -> PublicParty:
        pem = assignment.researcher_certificate.encode()
        cached = self._researchers.get(pem)
        if cached is None:
            cached = verify_party_certificate(
                pem, self._kit.ca, expected_id=assignment.researcher_id, expected_role=Role.RESEARCHER
            )
            self._researchers[pem] = cached
        return cached

    def _open_request(
        self, assignment: RunAssignment, attachment: bytes, researcher: PublicParty
    ) -> TaskRequest:
        envelope = Envelope.decode(attachment)
        if envelope.kind is not Kind.TASK_INPUT or envelope.task_id != assignment.task_id:
            raise WireError(
                f"run {assignment.run_id}: attachment is not the input of task {assignment.task_id}"
            )
        # A run may wait at the hub while this node is offline: inputs stay valid for
        # input_max_age_s, and their ids are remembered for as long.
        max_age_ms = int(self._config.input_max_age_s * 1000)
        plaintext = open_envelope(
            envelope, me=self._kit.identity, sender=researcher, guard=self._guard, max_age_ms=max_age_ms
        )
        try:
            request = TaskRequest.model_validate(json.loads(plaintext))
        except (ValidationError, ValueError):
            raise WireError(f"run {assignment.run_id}: the sealed task request is malformed") from None
        if request.algorithm != assignment.algorithm or request.collaboration != assignment.collaboration_id:
            raise WireError(
                f"run {assignment.run_id}: the hub's routing (algorithm {assignment.algorithm!r}, "
                f"collaboration {assignment.collaboration_id!r}) disagrees with the sealed request"
            )
        return request

    async def _final(
        self, assignment: RunAssignment, status: RunStatus, sealed: bytes, reason: str = ""
    ) -> None:
        update = RunStatusUpdate(run_id=assignment.run_id, status=status, reason=reason[:500])
        envelope = encode_control(update, self.node_id, HUB, sealed, assignment.task_id)
        self._finished[assignment.run_id] = envelope.encode()
        while len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)
        # Peer messages held for this task can no longer be used, and later ones are dropped.
        self._early.pop(assignment.task_id, None)
        self._done[assignment.task_id] = None
        while len(self._done) > FINISHED_KEPT:
            self._done.popitem(last=False)
        self._active.discard(assignment.run_id)
        await self._link.send_reliably(envelope)

    async def _status(self, assignment: RunAssignment, status: RunStatus) -> None:
        update = RunStatusUpdate(run_id=assignment.run_id, status=status)
        await self._link.send_best_effort(
            encode_control(update, self.node_id, HUB, b"", assignment.task_id).encode()
        )


def _deliver_peer(channel: PeerChannel, envelope: Envelope) -> None:
    try:
        channel.deliver(envelope)
    except ConfideError as exc:
        log.error("peer message from %s refused: %s", envelope.sender, exc)
