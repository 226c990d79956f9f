"""Node sessions: authenticate a node's outbound connection, push its runs, take its results.

One session per connected node, whatever the transport. The hub only routes: it checks
the *headers* of the sealed result envelope (kind, sender, recipient, task) so a node
cannot file a result for another node's run or address it to someone else, and stores
the envelope as opaque bytes.

Session steps:

1. the first frame must be a HELLO with a token whose hash names that node, within 10 s;
   anything else gets an ERROR frame and the connection is closed;
2. WELCOME, then every unfinished run addressed to the node (RUN frames), marked delivered;
3. then RUN_STATUS frames: RUNNING updates the run, COMPLETED / FAILED stores the sealed
   result and is acknowledged (ACK) only after the store write, so a node resends until
   the result is safe; a duplicate of a stored result is acknowledged again;
4. on disconnect the node is marked offline; its unfinished runs wait for it to return.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time

from confide._errors import AuthError, ConfideError, ConflictError, NotFoundError, TransportError, WireError
from confide.hub._audit import AuditLog
from confide.hub._records import NodeRecord, Result, Run, RunStatus
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
    RunStatusUpdate,
    Welcome,
    decode_control,
    encode_control,
)

__all__ = ["NodeSession", "NodeSessions"]

log = logging.getLogger("confide.hub.nodes")
HELLO_TIMEOUT_S = 10.0


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
        async with self._lock:
            await self.conn.send(envelope.encode())


class NodeSessions:
    """The registry of connected nodes and the session loop."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        watch: TaskWatch,
        heartbeat_s: float,
    ) -> None:
        self._store = store
        self._audit = audit
        self._watch = watch
        self._heartbeat_s = heartbeat_s
        self._sessions: dict[str, NodeSession] = {}
        self.last_seen_ms: dict[str, int] = {}

    def online(self, node_id: str) -> bool:
        """Whether ``node_id`` has a live session."""
        return node_id in self._sessions

    async def close_all(self) -> None:
        """Close every session (hub shutdown)."""
        for session in list(self._sessions.values()):
            with contextlib.suppress(ConfideError):
                await session.conn.close()

    async def deliver(self, run: Run, assignment: RunAssignment) -> None:
        """Push ``run`` to its node if connected; otherwise it waits in the store."""
        session = self._sessions.get(run.node_id)
        if session is None:
            return
        try:
            await session.send(encode_control(assignment, HUB, run.node_id, run.input_envelope, run.task_id))
            await self._store.set_run_status(run.id, run.node_id, RunStatus.DELIVERED)
        except (TransportError, ConflictError) as exc:
            log.info("run %s not delivered to %s now (%s); it will be on reconnect", run.id, run.node_id, exc)
            return
        self._watch.changed(run.task_id)

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
            collabs = await self._store.collaborations_of(node.id)
            await session.send(
                encode_control(Welcome(node_id=node.id, collaborations=[c.id for c in collabs], heartbeat_s=self._heartbeat_s), HUB, node.id)
            )
            for run in await self._store.open_runs_for(node.id):
                await self.deliver(run, await self.assignment(run))
            await self._loop(session)
        except TransportError:
            pass
        finally:
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
        node = await self._store.node_by_token_hash(token_hash(hello.token))
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

    async def assignment(self, run: Run) -> RunAssignment:
        task = await self._store.task(run.task_id)
        if task is None:
            raise NotFoundError(f"run {run.id} belongs to missing task {run.task_id}")
        certificate = await self._store.party_certificate(task.researcher_id) or b""
        return RunAssignment(
            run_id=run.id, task_id=task.id, collaboration_id=task.collaboration_id,
            researcher_id=task.researcher_id, algorithm=task.algorithm,
            researcher_certificate=certificate.decode(),
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
                else:
                    raise WireError(f"a node may not send {envelope.kind.name} frames to the hub")
            except (WireError, NotFoundError) as exc:
                self._audit.record(session.node.id, "node.frame", "", "rejected", str(exc))
                await session.send(encode_control(ErrorNotice(code="rejected", message=str(exc)), HUB, session.node.id))

    async def _on_status(self, session: NodeSession, envelope: Envelope) -> None:
        update, attachment = decode_control(envelope, RunStatusUpdate)
        node_id = session.node.id
        try:
            status = RunStatus(update.status)
        except ValueError:
            raise WireError(f"unknown run status {update.status!r}") from None
        try:
            if status.finished:
                run = await self._save_result(node_id, update.run_id, status, attachment, update.reason)
            else:
                run = await self._store.set_run_status(update.run_id, node_id, status)
            outcome = "ok"
        except ConflictError:
            run = None
            outcome = "duplicate"
        await session.send(encode_control(Ack(message_id=envelope.message_id.hex()), HUB, node_id))
        self._audit.record(node_id, f"run.{status.value}", update.run_id, outcome)
        if run is not None:
            self._watch.changed(run.task_id)

    async def _save_result(self, node_id: str, run_id: str, status: RunStatus, attachment: bytes, reason: str) -> Run:
        runs = [r for r in await self._store.open_runs_for(node_id) if r.id == run_id]
        if not runs:
            # Finished already (duplicate) or not this node's: let the store say which.
            await self._store.set_run_status(run_id, node_id, RunStatus.RUNNING)
            raise NotFoundError(f"run {run_id} is not open for node {node_id}")
        run = runs[0]
        task = await self._store.task(run.task_id)
        if status is RunStatus.FAILED and not attachment:
            # The node could not open the input, so had no verified researcher to seal to.
            self._audit.record(node_id, "run.refused", run_id, "failed", reason)
            await self._store.save_result(Result(run.id, run.task_id, node_id, status, b"", _now_ms()))
            return run
        sealed = Envelope.decode(attachment)
        if (
            sealed.kind is not MessageKind.TASK_RESULT
            or not sealed.sealed
            or sealed.sender != node_id
            or task is None
            or sealed.recipient != task.researcher_id
            or sealed.task_id != run.task_id
        ):
            raise WireError(
                f"result for run {run_id} is not a sealed TASK_RESULT from {node_id} "
                "to the task's researcher for this task"
            )
        await self._store.save_result(Result(run.id, run.task_id, node_id, status, attachment, _now_ms()))
        return run
