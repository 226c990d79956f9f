"""Node sessions: authenticate a node's outbound connection, push its runs, take its results.

One session per connected node, whatever the transport. The hub only routes: it checks
the *headers* of the sealed result envelope (kind, sender, recipient, task) so a node
cannot file a result for another node's run or address it to someone else, and stores
the envelope as opaque bytes.

Session steps:

1. the first frame must be a HELLO with a token whose hash names that node, within 10 s;
   anything else gets an ERROR frame and the connection is closed;
2. WELCOME, then every unfinished run addressed to the node (RUN frames); a run stays
   *pending* in the store until it finishes, so a run lost with a connection is simply
   delivered again when the node returns;
3. then RUN_STATUS frames: RUNNING is noted in memory (progress for researchers),
   COMPLETED / FAILED stores the sealed
   result and is acknowledged (ACK) only after the store write, so a node resends until
   the result is safe; a duplicate of a stored result is acknowledged again;
4. PEER frames and their ACKs go to the relay (:mod:`confide.hub._relay`), which also
   hands a node that connects the messages the mailbox kept for it;
5. on disconnect the node is marked offline; its unfinished runs wait for it to return.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time

from confide._errors import (
    AuthError,
    ConfideError,
    ConflictError,
    NotFoundError,
    ProtocolError,
    TransportError,
    WireError,
)
from confide.hub._aggregation import AggregationRooms
from confide.hub._audit import AuditLog
from confide.hub._directory import Directory
from confide.hub._records import NodeRecord, Result, Run, Task
from confide.hub._relay import PeerRelay
from confide.hub._store import Store
from confide.hub._watch import TaskWatch
from confide.kit import token_hash
from confide.transport import Connection
from confide.wire import (
    HUB,
    Ack,
    Envelope,
    ErrorNotice,
    Heartbeat,
    Hello,
    MessageKind,
    RunAssignment,
    RunStatus,
    RunStatusUpdate,
    Welcome,
    decode_control,
    encode_control,
)

__all__ = ["NodeSession", "NodeSessions"]

log = logging.getLogger("confide.hub.nodes")
HELLO_TIMEOUT_S = 10.0
TASKS_KEPT = 10_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class NodeSession:
    """One connected node; sends are serialised so frames never interleave."""

    def __init__(self, node: NodeRecord, conn: Connection) -> None:
        self.node = node
        self.conn = conn
        self.since_ms = _now_ms()
        self._lock = asyncio.Lock()

    async def send(self, envelope: Envelope) -> None:
        await self.send_frame(envelope.encode())

    async def send_frame(self, frame: bytes) -> None:
        async with self._lock:
            await self.conn.send(frame)


class NodeSessions:
    """The registry of connected nodes and the session loop."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        audit: AuditLog,
        watch: TaskWatch,
        heartbeat_s: float,
        mailbox_ttl_s: float = 7 * 24 * 3600,
        stage_timeout_s: float = 120.0,
    ) -> None:
        self._store = store
        self._directory = directory
        self._audit = audit
        self._watch = watch
        self._heartbeat_s = heartbeat_s
        self._sessions: dict[str, NodeSession] = {}
        # run id -> its task, for runs handed out by this process (saves store reads)
        self._open: dict[str, tuple[Task, str]] = {}
        # runs a node reported as started; kept in memory only (it is progress, not state
        # that must survive a restart: an unfinished run is redelivered either way)
        self._running: set[str] = set()
        # task id -> its nodes (routing of peer and aggregation messages)
        self._task_nodes: dict[str, set[str]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.last_seen_ms: dict[str, int] = {}
        self._open_tasks: dict[str, Task] = {}
        self.relay = PeerRelay(store, self._sessions, mailbox_ttl_s)
        self.aggregation = AggregationRooms(
            store, audit, watch, self._send_frames, stage_timeout_s=stage_timeout_s
        )

    def running(self, run_id: str) -> bool:
        """Whether a node reported ``run_id`` started and has not finished it."""
        return run_id in self._running

    def online(self, node_id: str) -> bool:
        """Whether ``node_id`` has a live session."""
        return node_id in self._sessions

    async def close_all(self) -> None:
        """Close every session (hub shutdown)."""
        for session in list(self._sessions.values()):
            with contextlib.suppress(ConfideError):
                await session.conn.close()

    async def deliver(self, run: Run, task: Task, nodes: list[str] | None = None) -> None:
        """Push ``run`` to its node if connected; otherwise it waits in the store.

        ``nodes`` are the task's nodes (read from the store when not given): their
        certificates travel with the run, for the node-to-node channel.
        """
        self._open[run.id] = (task, run.node_id)
        if nodes is not None:
            self._note_task_nodes(task.id, set(nodes))
        session = self._sessions.get(run.node_id)
        if session is None:
            return
        if nodes is None:
            nodes = [r.node_id for r in await self._store.runs(task.id)]
        assignment = await self._assignment(run, task, nodes)
        try:
            await session.send(encode_control(assignment, HUB, run.node_id, run.input_envelope, run.task_id))
        except TransportError as exc:
            log.info("run %s not delivered to %s now (%s); it will be on reconnect", run.id, run.node_id, exc)

    async def serve(self, conn: Connection) -> None:
        """Run one node's session until it disconnects."""
        try:
            node = await self._authenticate(conn)
        except (AuthError, WireError, TransportError, TimeoutError) as exc:
            with contextlib.suppress(ConfideError):
                await conn.close()
            log.warning("node connection refused: %s", exc)
            return
        session = NodeSession(node, conn)
        previous = self._sessions.get(node.id)
        self._sessions[node.id] = session
        if previous is not None:
            with contextlib.suppress(ConfideError):
                await previous.conn.close()
        self._audit.record(node.id, "node.connect", node.id, "ok")
        log.info("node %s connected", node.id)
        try:
            collabs = await self._directory.collaborations_of(node.id)
            welcome = Welcome(
                node_id=node.id, collaborations=[c.id for c in collabs], heartbeat_s=self._heartbeat_s
            )
            await session.send(encode_control(welcome, HUB, node.id))
            for run in await self._store.open_runs_for(node.id):
                task = await self._store.task(run.task_id)
                if task is not None:
                    await self.deliver(run, task)
            await self.relay.hand_over(node.id, session)
            await self._loop(session)
        except TransportError:
            pass
        finally:
            # A node whose connection ends leaves its secure-aggregation rounds, even when a
            # new connection has replaced this one already: what it sent or was sent on this
            # one may be lost. Its own task, because this handler may be being cancelled.
            gone = asyncio.create_task(self.aggregation.on_disconnect(node.id))
            self._background.add(gone)
            gone.add_done_callback(self._background.discard)
            if self._sessions.get(node.id) is session:
                del self._sessions[node.id]
                self.last_seen_ms[node.id] = _now_ms()
                self._audit.record(node.id, "node.disconnect", node.id, "ok")
                log.info("node %s disconnected", node.id)

    async def _authenticate(self, conn: Connection) -> NodeRecord:
        frame = await asyncio.wait_for(conn.recv(), HELLO_TIMEOUT_S)
        try:
            hello, _ = decode_control(Envelope.decode(frame), Hello)
        except WireError as exc:
            await self._refuse(conn, "protocol", f"first frame must be HELLO: {exc}")
            raise
        node = await self._directory.node_by_token_hash(token_hash(hello.token))
        if node is None or not hmac.compare_digest(node.id, hello.node_id):
            self._audit.record(hello.node_id, "node.connect", hello.node_id, "denied", "wrong credentials")
            message = (
                f"credentials for node {hello.node_id!r} were refused; "
                "check the token in the node's kit or re-issue the kit"
            )
            await self._refuse(conn, "auth", message)
            raise AuthError(message)
        return node

    async def _refuse(self, conn: Connection, code: str, message: str) -> None:
        with contextlib.suppress(ConfideError):
            await conn.send(encode_control(ErrorNotice(code=code, message=message), HUB, "").encode())

    async def _assignment(self, run: Run, task: Task, nodes: list[str]) -> RunAssignment:
        certificate = await self._directory.certificate(task.researcher_id) or b""
        peers = {n: (await self._directory.certificate(n) or b"").decode() for n in nodes if n != run.node_id}
        return RunAssignment(
            run_id=run.id,
            task_id=task.id,
            collaboration_id=task.collaboration_id,
            researcher_id=task.researcher_id,
            algorithm=task.algorithm,
            researcher_certificate=certificate.decode(),
            peers=peers,
        )

    async def _loop(self, session: NodeSession) -> None:
        while True:
            frame = await session.conn.recv()
            self.last_seen_ms[session.node.id] = _now_ms()
            try:
                envelope = Envelope.decode(frame)
                if envelope.kind is MessageKind.HEARTBEAT:
                    await session.send(encode_control(Heartbeat(), HUB, session.node.id))
                elif envelope.kind is MessageKind.RUN_STATUS:
                    await self._on_status(session, envelope)
                elif envelope.kind is MessageKind.AGGREGATION:
                    await self._on_aggregation(session, envelope)
                elif envelope.kind in (MessageKind.PEER, MessageKind.PEER_CHUNK):
                    nodes = await self._nodes_of(envelope.task_id)
                    await self.relay.forward(session.node.id, session, envelope, frame, nodes)
                elif envelope.kind is MessageKind.ACK:
                    ack, _ = decode_control(envelope, Ack)
                    await self.relay.acknowledged(session.node.id, ack.message_id)
                else:
                    raise WireError(f"a node may not send {envelope.kind.name} frames to the hub")
            except (WireError, NotFoundError, ProtocolError) as exc:
                self._audit.record(session.node.id, "node.frame", "", "rejected", str(exc))
                notice = ErrorNotice(code="rejected", message=str(exc))
                await session.send(encode_control(notice, HUB, session.node.id))

    async def _on_aggregation(self, session: NodeSession, envelope: Envelope) -> None:
        """A chunk of a secure-aggregation message: the hub is the round's server."""
        sender = session.node.id
        nodes = await self._nodes_of(envelope.task_id)
        task = self._open_tasks.get(envelope.task_id) or await self._store.task(envelope.task_id)
        if task is None or envelope.sender != sender or sender not in nodes or envelope.recipient != HUB:
            raise WireError(
                f"an aggregation message must come from {sender} to the hub within one of its tasks"
            )
        self._open_tasks[task.id] = task
        while len(self._open_tasks) > TASKS_KEPT:
            self._open_tasks.pop(next(iter(self._open_tasks)))
        await self.aggregation.on_frame(sender, envelope, nodes, task.researcher_id)

    async def _send_frames(self, node_id: str, frames: list[Envelope]) -> None:
        session = self._sessions.get(node_id)
        if session is None:
            return  # gone: the round has dropped it already or will at its timeout
        for frame in frames:
            await session.send(frame)

    async def _nodes_of(self, task_id: str) -> set[str]:
        nodes = self._task_nodes.get(task_id)
        if nodes is None:
            nodes = {r.node_id for r in await self._store.runs(task_id)}
            self._note_task_nodes(task_id, nodes)
        return nodes

    def _note_task_nodes(self, task_id: str, nodes: set[str]) -> None:
        self._task_nodes[task_id] = nodes
        while len(self._task_nodes) > TASKS_KEPT:  # a cache: the store has them all
            self._task_nodes.pop(next(iter(self._task_nodes)))

    async def _on_status(self, session: NodeSession, envelope: Envelope) -> None:
        update, attachment = decode_control(envelope, RunStatusUpdate)
        node_id = session.node.id
        status = update.status  # an unknown status was refused by decode_control
        task_id: str | None = None
        try:
            if status.finished:
                task = await self._save_result(node_id, update.run_id, status, attachment, update.reason)
                task_id = task.id
            elif status is RunStatus.RUNNING:
                await self._check_open(node_id, update.run_id)
                self._running.add(update.run_id)
            else:
                raise WireError(f"a node may report a run running, completed or failed, not {status.value}")
            outcome = "ok"
        except ConflictError:
            outcome = "duplicate"
        await session.send(encode_control(Ack(message_id=envelope.message_id.hex()), HUB, node_id))
        self._audit.record(node_id, f"run.{status.value}", update.run_id, outcome)
        if task_id is not None:
            # Researchers wait for finished runs only; progress within a node wakes nobody.
            self._watch.changed(task_id)

    async def _save_result(
        self, node_id: str, run_id: str, status: RunStatus, attachment: bytes, reason: str
    ) -> Task:
        task = self._open_task(node_id, run_id) or await self._task_of_open_run(node_id, run_id)
        if status is RunStatus.FAILED and not attachment:
            # The node could not open the input, so had no verified researcher to seal to.
            self._audit.record(node_id, "run.refused", run_id, "failed", reason)
        else:
            sealed = Envelope.decode(attachment)
            if (
                sealed.kind is not MessageKind.TASK_RESULT
                or not sealed.sealed
                or sealed.sender != node_id
                or sealed.recipient != task.researcher_id
                or sealed.task_id != task.id
            ):
                raise WireError(
                    f"result for run {run_id} is not a sealed TASK_RESULT from {node_id} "
                    "to the task's researcher for this task"
                )
        # The store checks that the run is this node's and still open.
        await self._store.save_result(Result(run_id, task.id, node_id, status, attachment, _now_ms()))
        self._open.pop(run_id, None)
        self._running.discard(run_id)
        return task

    async def _check_open(self, node_id: str, run_id: str) -> None:
        if self._open_task(node_id, run_id) is None:
            await self._task_of_open_run(node_id, run_id)

    def _open_task(self, node_id: str, run_id: str) -> Task | None:
        task, addressee = self._open.get(run_id, (None, ""))
        return task if addressee == node_id else None

    async def _task_of_open_run(self, node_id: str, run_id: str) -> Task:
        runs = [r for r in await self._store.open_runs_for(node_id) if r.id == run_id]
        task = None if not runs else await self._store.task(runs[0].task_id)
        if task is None:
            # Finished already (a duplicate) or not this node's: let the store say which.
            await self._store.set_run_status(run_id, node_id, RunStatus.RUNNING)
            raise NotFoundError(f"run {run_id} is not open for node {node_id}")
        return task
