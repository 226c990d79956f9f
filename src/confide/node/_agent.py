"""The node agent: dial out to the hub, take runs, check policy, run steps, seal results.

Steps of one run:

1. the hub pushes a RUN frame: routing facts and the researcher's certificate, with the
   task input sealed to this node attached;
2. the certificate is checked against the consortium CA (a hub that substitutes a key is
   caught here) and the input is opened (recipient, freshness, AEAD, signature, replay);
3. the sealed request must agree with the hub's routing facts, and the policy must allow
   collaboration, researcher and algorithm;
4. the step runs in a worker process; its output is validated against its declaration;
5. the outcome (output or error message) is sealed to the researcher and sent as a final
   RUN_STATUS; it is kept and resent until the hub acknowledges it.

The agent reconnects with exponential backoff and full jitter (1 s doubling to 30 s);
refused credentials stop it with a clear message instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import logging
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from confide._errors import AuthError, ConfideError, PolicyError, ProtocolError, TransportError, WireError
from confide._version import __version__
from confide.algorithms import MAIN_STEP, Algorithm, TrainingCost, TrainingSpend, get_algorithm
from confide.crypto import MemoryReplayGuard, PublicParty, Role, verify_party_certificate
from confide.kit import Kit
from confide.node._config import NodeConfig
from confide.node._ledger import PrivacyLedger
from confide.node._peers import TaskPeers
from confide.node._policy import check_policy
from confide.node._worker import StepOutcome, WorkerPool, learning_installed
from confide.transport import Connection, Connector
from confide.wire import (
    HUB,
    Ack,
    Envelope,
    ErrorNotice,
    Heartbeat,
    Hello,
    MessageKind,
    RunAssignment,
    RunStatusUpdate,
    TaskOutcome,
    TaskRequest,
    Welcome,
    decode_control,
    encode_control,
    open_envelope,
    seal_envelope,
)

if TYPE_CHECKING:
    from confide.learning import PrivacyAccountant

__all__ = ["Agent"]

log = logging.getLogger("confide.node")
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
EARLY_KEPT = 1_000  # peer messages held per task until this node starts its part
FINISHED_KEPT = 10_000  # recent results kept to answer a redelivered run without rerunning it


@dataclass
class _Sent:
    """A final status frame kept until acknowledged."""

    run_id: str
    frame: bytes


class Agent:
    """One hospital's node: ``await Agent(config, kit, connector).run()``."""

    def __init__(
        self, config: NodeConfig, kit: Kit, connector: Connector, workers: WorkerPool | None = None
    ) -> None:
        self.config = config
        self.kit = kit
        self.connector = connector
        self.workers = workers or WorkerPool(
            config.data, config.workers, config.training_data, node_id=kit.party_id
        )
        self.connected = asyncio.Event()
        self._guard = MemoryReplayGuard()
        self._peers: dict[bytes, PublicParty] = {}
        self._unacked: dict[str, _Sent] = {}
        self._finished: OrderedDict[str, bytes] = OrderedDict()
        self._active: set[str] = set()
        self._conn: Connection | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._limit = asyncio.Semaphore(config.workers)
        self._channels: dict[str, TaskPeers] = {}
        self._ack_waiters: dict[str, asyncio.Event] = {}
        self._early: dict[str, list[Envelope]] = {}
        self._ledger: PrivacyLedger | None = None
        self._accountant: PrivacyAccountant | None = None
        self._accountant_lock = threading.Lock()  # opened once, from whichever thread charges first

    @property
    def node_id(self) -> str:
        """This node's party id."""
        return self.kit.party_id

    async def run(self) -> None:
        """Stay connected to the hub until cancelled; :class:`AuthError` if credentials are refused."""
        await self.workers.warm_up()
        if self.config.training_data and learning_installed():
            # The accountant needs Opacus (and so torch): import it off the event loop now,
            # not seconds into the first training round.
            self._background(asyncio.to_thread(_import_accountant), "prepare-training")
        try:
            await self._connect_forever()
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _connect_forever(self) -> None:
        delay = BACKOFF_START_S
        while True:
            try:
                conn = await self.connector.connect()
            except TransportError as exc:
                wait = secrets.SystemRandom().uniform(0, delay)
                log.warning("%s; retrying in %.1f s", exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            try:
                await self._session(conn)
                delay = BACKOFF_START_S
            except TransportError as exc:
                log.warning("lost the hub connection (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                self._conn = None
                with contextlib.suppress(ConfideError):
                    await conn.close()

    async def close(self) -> None:
        """Stop work in progress and the worker processes."""
        for task in list(self._tasks):
            task.cancel()
        self.workers.close()

    async def _session(self, conn: Connection) -> None:
        await conn.send(
            encode_control(
                Hello(node_id=self.node_id, token=self.kit.token, software=__version__),
                self.node_id,
                HUB,
            ).encode()
        )
        first = Envelope.decode(await conn.recv())
        if first.kind is MessageKind.ERROR:
            notice, _ = decode_control(first, ErrorNotice)
            raise AuthError(f"the hub refused node {self.node_id!r}: {notice.message}")
        welcome, _ = decode_control(first, Welcome)
        log.info(
            "connected to %s over %s; collaborations: %s",
            self.config.hub_url or self.kit.hub_url,
            self.connector.name,
            ", ".join(welcome.collaborations) or "none",
        )
        # Resend what the hub never acknowledged, in the original order, before anything
        # new may go out on this connection (a stream's chunks must not overtake).
        resent: set[str] = set()
        while pending := [(k, v) for k, v in self._unacked.items() if k not in resent]:
            for key, sent in pending:
                await conn.send(sent.frame)
                resent.add(key)
        self._conn = conn
        self.connected.set()
        every_s = min(welcome.heartbeat_s, self.config.heartbeat_s)
        heartbeat = asyncio.create_task(self._heartbeats(conn, every_s))
        try:
            while True:
                # The hub answers every heartbeat: silence means a dead link (no FIN seen).
                try:
                    frame = await asyncio.wait_for(conn.recv(), 3 * every_s)
                except TimeoutError:
                    raise TransportError(f"no frame from the hub for {3 * every_s:.0f} s") from None
                await self._on_frame(Envelope.decode(frame))
        finally:
            heartbeat.cancel()

    async def _heartbeats(self, conn: Connection, every_s: float) -> None:
        with contextlib.suppress(TransportError):
            while True:
                await asyncio.sleep(every_s)
                await conn.send(encode_control(Heartbeat(), self.node_id, HUB).encode())

    async def _on_frame(self, envelope: Envelope) -> None:
        if envelope.kind is MessageKind.RUN:
            assignment, attachment = decode_control(envelope, RunAssignment)
            self._start(assignment, attachment)
        elif envelope.kind in (MessageKind.PEER, MessageKind.PEER_CHUNK):
            self._on_peer(envelope)
        elif envelope.kind is MessageKind.AGGREGATION:
            channel = self._channels.get(envelope.task_id)
            try:
                if channel is None:
                    raise ProtocolError(
                        f"an aggregation message for task {envelope.task_id}, which is not running"
                    )
                channel.deliver_aggregation(envelope)
            except ConfideError as exc:
                log.warning("aggregation message from the hub dropped: %s", exc)
        elif envelope.kind is MessageKind.ACK:
            ack, _ = decode_control(envelope, Ack)
            self._unacked.pop(ack.message_id, None)
            waiter = self._ack_waiters.pop(ack.message_id, None)
            if waiter is not None:
                waiter.set()
        elif envelope.kind is MessageKind.ERROR:
            notice, _ = decode_control(envelope, ErrorNotice)
            log.error("the hub rejected a frame: %s", notice.message)
        elif envelope.kind is not MessageKind.HEARTBEAT:
            log.warning("ignoring unexpected %s frame from the hub", envelope.kind.name)

    def _start(self, assignment: RunAssignment, attachment: bytes) -> None:
        run_id = assignment.run_id
        if run_id in self._active:
            return
        finished = self._finished.get(run_id)
        if finished is not None:
            # Redelivered after a lost acknowledgement: send the same result again.
            self._send_final(run_id, finished)
            return
        self._active.add(run_id)
        self._background(self._process(assignment, attachment), f"run-{run_id}")

    def _background(self, work: Coroutine[Any, Any, object], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, assignment: RunAssignment, attachment: bytes) -> None:
        researcher: PublicParty | None = None
        try:
            researcher = self._researcher(assignment)
            request = self._open_request(assignment, attachment, researcher)
        except ConfideError as exc:
            log.error("run %s refused: %s", assignment.run_id, exc)
            if researcher is None:
                # No verified researcher key: nobody to seal to; the hub learns only the kind.
                await self._final(assignment, "failed", b"", reason=f"{type(exc).__name__}: {exc}")
            else:
                error = f"node {self.node_id!r} refused the task input: {exc}"
                await self._final(
                    assignment,
                    "failed",
                    self._seal(assignment, researcher, StepOutcome(None, error)),
                )
            return
        try:
            check_policy(
                self.config.policy,
                self.node_id,
                collaboration=request.collaboration,
                researcher=researcher.party_id,
                algorithm=request.algorithm,
            )
            await self._status(assignment.run_id, "running", assignment.task_id)
            algorithm = get_algorithm(request.algorithm)
            if not algorithm.multiparty:
                outcome = await self._run_local(request.algorithm, request.params)
            else:
                outcome = await self._run_protocol(assignment, algorithm, request.params, request.nodes)
        except ConfideError as exc:
            outcome = StepOutcome(None, str(exc))
        except Exception as exc:  # a bug must end the run with a reason, not leave it hanging
            log.exception("run %s of %s failed", assignment.run_id, request.algorithm)
            outcome = StepOutcome(
                None, f"{request.algorithm} failed with {type(exc).__name__}; the node's log has the details"
            )
        log.info(
            "run %s of %s: %s",
            assignment.run_id,
            request.algorithm,
            "failed" if outcome.error else "completed",
        )
        status = "failed" if outcome.error else "completed"
        await self._final(assignment, status, self._seal(assignment, researcher, outcome))

    async def _run_local(
        self, algorithm: str, params: dict[str, object], step: str = MAIN_STEP
    ) -> StepOutcome:
        async with self._limit:
            return await self.workers.run(algorithm, params, step)

    async def _run_protocol(
        self, assignment: RunAssignment, algorithm: Algorithm, params: dict[str, object], nodes: list[str]
    ) -> StepOutcome:
        if sorted({self.node_id, *assignment.peers}) != sorted(nodes):
            raise WireError(
                f"the hub offered peers {sorted(assignment.peers)} but the researcher addressed "
                f"{sorted(nodes)}; refusing to compute with a group the researcher did not choose"
            )
        peers = {
            node: verify_party_certificate(
                pem.encode(), self.kit.ca, expected_id=node, expected_role=Role.NODE
            )
            for node, pem in assignment.peers.items()
        }
        channel = TaskPeers(
            task_id=assignment.task_id,
            identity=self.kit.identity,
            peers=peers,
            algorithm=algorithm.name,
            run_local=self._run_local,
            send_frame=self._send_reliably,
            guard=self._guard,
            max_age_ms=int(self.config.input_max_age_s * 1000),
            researcher=self._researcher(assignment),
            send_now=self._send_now,
            disconnect=self._drop_connection,
            min_count=self.config.policy.min_count,
            charge=functools.partial(self._charge_privacy, assignment),
            charge_training=functools.partial(self._charge_training, assignment),
        )
        self._channels[assignment.task_id] = channel
        for early in self._early.pop(assignment.task_id, []):
            self._deliver_peer(channel, early)
        try:
            return StepOutcome(await algorithm.run_protocol(channel, params), None)
        except ConfideError:
            raise
        except Exception as exc:  # an algorithm's own bug: report it, keep the node
            log.exception("algorithm %s failed", algorithm.name)
            error = f"{algorithm.name} failed with {type(exc).__name__}; the node's log has the details"
            return StepOutcome(None, error)
        finally:
            del self._channels[assignment.task_id]

    async def _send_reliably(self, envelope: Envelope) -> asyncio.Event:
        """Send a frame the hub acknowledges; it is resent after a reconnect until it is.

        Returns an event set on the acknowledgement (flow control for streams).
        """
        acked = self._ack_waiters.setdefault(envelope.message_id.hex(), asyncio.Event())
        frame = envelope.encode()
        self._unacked[envelope.message_id.hex()] = _Sent("", frame)
        if self._conn is not None:
            with contextlib.suppress(TransportError):
                await self._conn.send(frame)
        return acked

    async def _charge_privacy(
        self, assignment: RunAssignment, dataset: str, epsilon: float, delta: float
    ) -> None:
        """Record a DP task's spend in the persisted ledger, or refuse it with what is left."""
        policy = self.config.policy
        budget = policy.budget_for(assignment.researcher_id, dataset)
        if self._ledger is None:
            path = policy.ledger or self.kit.directory / "privacy-ledger.sqlite"
            self._ledger = await asyncio.to_thread(PrivacyLedger, path)
        await asyncio.to_thread(
            self._ledger.charge,
            researcher=assignment.researcher_id,
            dataset=dataset,
            task_id=assignment.task_id,
            epsilon=epsilon,
            delta=delta,
            budget=budget,
        )

    async def _charge_training(
        self, assignment: RunAssignment, dataset: str, job_id: str, round: int, cost: TrainingCost
    ) -> TrainingSpend:
        """Check a DP-SGD round (and the rounds left after it) against the budget, and record it.

        The accountant keeps one history per training data set, across rounds and jobs. The
        round is recorded under the task that runs it, so a round run again (a restarted
        coordinator) is a new release and is charged again.
        """
        policy = self.config.policy
        if cost.noise_multiplier is None:
            if not policy.allow_training_without_dp:
                raise PolicyError(
                    f"job {job_id} asks to train on {dataset} without differential privacy (epsilon inf); "
                    "this node allows that only with policy.allow_training_without_dp: true in node.yaml"
                )
            return TrainingSpend(math.inf, math.inf, cost.delta)
        budget = policy.budget_for(assignment.researcher_id, dataset)
        sigma = cost.noise_multiplier
        run = f"{job_id}/{assignment.task_id}"

        def charge() -> TrainingSpend:
            # In a thread: the first import of the accountant loads Opacus and torch.
            from confide.learning import NoisySteps, PrivacyAccountant, epsilon_spent

            with self._accountant_lock:
                if self._accountant is None:
                    ledger = policy.ledger or self.kit.directory / "privacy-ledger.sqlite"
                    self._accountant = PrivacyAccountant(ledger.with_name("dpsgd-accountant.sqlite"))
                accountant = self._accountant
            spent = NoisySteps(sigma, cost.sample_rate, cost.steps)
            planned = [NoisySteps(sigma, cost.sample_rate, cost.steps * cost.rounds_left)]
            accountant.check(dataset=dataset, job_id=job_id, planned=planned, budget=budget)
            total = accountant.charge(
                dataset=dataset,
                job_id=run,
                round=round,
                spent=spent,
                budget=budget,
                researcher=assignment.researcher_id,
            )
            delta = budget.delta if budget is not None else cost.delta
            mine = [r.spent for r in accountant.rounds(dataset) if r.job_id.startswith(f"{job_id}/")]
            return TrainingSpend(epsilon_spent(mine, delta, accountant.accounting), total, delta)

        return await asyncio.to_thread(charge)

    async def _drop_connection(self) -> None:
        """Close the hub connection (it is made again at once): a deliberate dropout."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(ConfideError):
                await conn.close()

    async def _send_now(self, envelope: Envelope) -> None:
        """Send a frame that is not resent: losing the connection means leaving the round."""
        conn = self._conn
        if conn is None:
            raise ProtocolError("not connected to the hub; this node drops out of the secure aggregation")
        try:
            await conn.send(envelope.encode())
        except TransportError as exc:
            raise ProtocolError(
                f"lost the hub connection ({exc}); this node drops out of the round"
            ) from None

    def _on_peer(self, envelope: Envelope) -> None:
        channel = self._channels.get(envelope.task_id)
        if channel is not None:
            self._deliver_peer(channel, envelope)
        else:
            # This node has not started its part of the task yet: keep it for then.
            waiting = self._early.setdefault(envelope.task_id, [])
            if len(waiting) < EARLY_KEPT:
                waiting.append(envelope)
        if self._conn is not None:
            ack = encode_control(Ack(message_id=envelope.message_id.hex()), self.node_id, HUB)
            self._send_quietly(ack.encode())

    @staticmethod
    def _deliver_peer(channel: TaskPeers, envelope: Envelope) -> None:
        try:
            channel.deliver(envelope)
        except ConfideError as exc:
            log.error("peer message from %s refused: %s", envelope.sender, exc)

    def _seal(self, assignment: RunAssignment, researcher: PublicParty, outcome: StepOutcome) -> bytes:
        result = TaskOutcome(
            node=self.node_id, ok=outcome.error is None, output=outcome.output, error=outcome.error
        )
        return seal_envelope(
            Envelope.new(
                MessageKind.TASK_RESULT,
                self.node_id,
                researcher.party_id,
                task_id=assignment.task_id,
            ),
            result.model_dump_json().encode(),
            self.kit.identity,
            researcher,
        ).encode()

    def _researcher(self, assignment: RunAssignment) -> PublicParty:
        pem = assignment.researcher_certificate.encode()
        cached = self._peers.get(pem)
        if cached is None:
            cached = verify_party_certificate(
                pem,
                self.kit.ca,
                expected_id=assignment.researcher_id,
                expected_role=Role.RESEARCHER,
            )
            self._peers[pem] = cached
        return cached

    def _open_request(
        self, assignment: RunAssignment, attachment: bytes, researcher: PublicParty
    ) -> TaskRequest:
        envelope = Envelope.decode(attachment)
        if envelope.kind is not MessageKind.TASK_INPUT or envelope.task_id != assignment.task_id:
            raise WireError(
                f"run {assignment.run_id}: attachment is not the input of task {assignment.task_id}"
            )
        # A run may wait at the hub while this node is offline: inputs stay valid for
        # input_max_age_s, and their ids are remembered for as long.
        max_age_ms = int(self.config.input_max_age_s * 1000)
        plaintext = open_envelope(
            envelope, me=self.kit.identity, sender=researcher, guard=self._guard, max_age_ms=max_age_ms
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

    async def _final(self, assignment: RunAssignment, status: str, sealed: bytes, reason: str = "") -> None:
        update = RunStatusUpdate(run_id=assignment.run_id, status=status, reason=reason[:500])
        envelope = encode_control(update, self.node_id, HUB, sealed, assignment.task_id)
        frame = envelope.encode()
        self._finished[assignment.run_id] = frame
        while len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)
        self._active.discard(assignment.run_id)
        self._unacked[envelope.message_id.hex()] = _Sent(assignment.run_id, frame)
        if self._conn is not None:
            with contextlib.suppress(TransportError):
                await self._conn.send(frame)

    def _send_final(self, run_id: str, frame: bytes) -> None:
        self._send_quietly(frame)

    def _send_quietly(self, frame: bytes) -> None:
        """Send a frame from synchronous code, without waiting for it."""
        conn = self._conn
        if conn is not None:
            self._background(self._quiet_send(conn, frame), "send")

    @staticmethod
    async def _quiet_send(conn: Connection, frame: bytes) -> None:
        with contextlib.suppress(TransportError):
            await conn.send(frame)

    async def _status(self, run_id: str, status: str, task_id: str) -> None:
        if self._conn is not None:
            with contextlib.suppress(TransportError):
                await self._conn.send(
                    encode_control(
                        RunStatusUpdate(run_id=run_id, status=status),
                        self.node_id,
                        HUB,
                        b"",
                        task_id,
                    ).encode()
                )


def _import_accountant() -> None:
    try:
        importlib.import_module("confide.learning").PrivacyAccountant  # noqa: B018 - the import is the point
    except Exception:  # a broken install: the first training round will report it
        log.warning("could not import the DP-SGD accountant (torch, opacus)", exc_info=True)
