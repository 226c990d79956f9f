"""The hub as the blind server of secure aggregation: one :class:`SecAggServer` per round.

Nodes open a round by sending their first message with the round's configuration; the
hub checks it against the task (the session is the task's, the nodes are exactly the
task's nodes, the output pads go to the task's researcher) and drives the server state
machine with the nodes' messages. A stage closes when every node still in the round has
answered, when a node's connection drops (it is out of the round at once, so a round
with dropouts does not wait for a timeout), or after ``stage_timeout_s``.

When the round ends the hub stores the padded sum, the survivors and their sealed pads
(or the reason it failed) for the researcher, and wakes whoever waits on the task. The
hub never holds more than one running total plus the vectors still being received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from confide._errors import ConfideError, ConflictError, ProtocolError
from confide.hub._audit import AuditLog
from confide.hub._records import AggregateRecord
from confide.hub._store import Store
from confide.hub._watch import TaskWatch
from confide.protocols.secagg import (
    Abort,
    Assembler,
    SecAggConfig,
    SecAggServer,
    ServerMessage,
    ServerStage,
    config_fields,
    decode_message,
    encode_message,
    frames_of,
)
from confide.wire import HUB, AggregateMeta, Envelope

__all__ = ["AggregationRooms"]

log = logging.getLogger("confide.hub.aggregation")
ROUNDS_KEPT = 10_000  # finished sessions remembered, so late messages are refused clearly

SendFrames = Callable[[str, list[Envelope]], Awaitable[None]]


@dataclass
class _Room:
    server: SecAggServer
    task_id: str
    timer: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AggregationRooms:
    """Every running round at this hub."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        watch: TaskWatch,
        send: SendFrames,
        *,
        stage_timeout_s: float = 120.0,
    ) -> None:
        self._store = store
        self._audit = audit
        self._watch = watch
        self._send = send
        self._stage_timeout_s = stage_timeout_s
        self._rooms: dict[str, _Room] = {}
        self._ended: dict[str, None] = {}
        self._assembler = Assembler(with_config=True)

    async def on_frame(self, node_id: str, envelope: Envelope, task_nodes: set[str], researcher: str) -> None:
        """Take one chunk from ``node_id``; ``task_nodes``/``researcher`` are the task's, from the store."""
        config: SecAggConfig | None = None
        try:
            whole = self._assembler.add(envelope)
            if whole is None:
                return
            config, message = whole
            if config is None:  # pragma: no cover - the assembler always parses a configuration here
                raise ProtocolError("a node's aggregation message lacks its configuration")
            room = self._room(envelope.task_id, config, task_nodes, researcher)
            async with room.lock:
                parsed = decode_message(message, room.server.config)
                before = room.server.stage
                # unmasking expands every survivor's self mask: keep it off the event loop
                outbox = await asyncio.to_thread(room.server.receive, node_id, parsed)  # type: ignore[arg-type]
                await self._after(room, before, outbox)
        except ProtocolError as exc:
            self._audit.record(node_id, "aggregation.message", envelope.task_id, "rejected", str(exc))
            log.warning("aggregation message from %s refused: %s", node_id, exc)
            if config is not None:
                await self._send_to(node_id, envelope.task_id, Abort(str(exc)), config)

    async def on_disconnect(self, node_id: str) -> None:
        """``node_id`` lost its connection: it drops out of every round it is in."""
        self._assembler.forget(node_id)
        for room in list(self._rooms.values()):
            if node_id in room.server.config.nodes:
                async with room.lock:
                    before = room.server.stage
                    await self._after(room, before, await asyncio.to_thread(room.server.drop, node_id))

    def _room(self, task_id: str, config: SecAggConfig, task_nodes: set[str], researcher: str) -> _Room:
        session = config.session
        room = self._rooms.get(session)
        if room is not None:
            if room.server.config.digest != config.digest:
                raise ProtocolError(f"round {session} is running with another configuration")
            return room
        if session in self._ended:
            raise ProtocolError(f"round {session} has ended; a round cannot be run twice")
        if not session.startswith(f"{task_id}/"):
            raise ProtocolError(f"round {session!r} does not belong to task {task_id}")
        if set(config.nodes) != task_nodes:
            raise ProtocolError(
                f"round {session} names nodes {list(config.nodes)}, not the task's {sorted(task_nodes)}"
            )
        if config.researcher not in (None, researcher):
            raise ProtocolError(
                f"round {session} pads its output for {config.researcher!r}, not for {researcher!r}"
            )
        room = _Room(SecAggServer(config), task_id)
        self._rooms[session] = room
        self._arm(room)
        log.info("round %s opened: %d nodes, %d values", session, len(config.nodes), config.length)
        return room

    async def _after(self, room: _Room, before: ServerStage, outbox: list[tuple[str, ServerMessage]]) -> None:
        if room.server.finished:
            await self._end(room)  # stored before anyone hears it finished
        for node, message in outbox:
            await self._send_to(node, room.task_id, message, room.server.config)
        if room.server.stage is not before:
            self._arm(room)

    def _arm(self, room: _Room) -> None:
        if room.timer is not None:
            room.timer.cancel()
        if not room.server.finished:
            room.timer = asyncio.get_running_loop().create_task(self._timeout(room, room.server.stage))

    async def _timeout(self, room: _Room, stage: ServerStage) -> None:
        await asyncio.sleep(self._stage_timeout_s)
        async with room.lock:
            if room.server.stage is stage and not room.server.finished:
                waiting = sorted(room.server.waiting_for)
                log.warning(
                    "round %s: stage %s timed out waiting for %s",
                    room.server.config.session,
                    stage.value,
                    waiting,
                )
                room.timer = None  # this task is the timer: do not cancel it while it runs
                await self._after(room, stage, await asyncio.to_thread(room.server.close_stage))

    async def _end(self, room: _Room) -> None:
        server = room.server
        session = server.config.session
        self._rooms.pop(session, None)
        self._ended[session] = None
        while len(self._ended) > ROUNDS_KEPT:
            self._ended.pop(next(iter(self._ended)))
        if room.timer is not None and room.timer is not asyncio.current_task():
            room.timer.cancel()
        outcome = server.outcome
        meta = AggregateMeta(
            ok=outcome is not None,
            error=server.error or "",
            bits=server.config.bits,
            length=server.config.length,
            config=config_fields(server.config),
            survivors=outcome.survivors if outcome else (),
            dropped=outcome.dropped if outcome else (),
            pads=outcome.pads if outcome else {},
        )
        total = outcome.total.astype(outcome.total.dtype.newbyteorder("<")).tobytes() if outcome else b""
        record = AggregateRecord(room.task_id, session, meta.to_json(), total, time.time_ns() // 1_000_000)
        with contextlib.suppress(ConflictError):
            await self._store.save_aggregate(record)
        result = "ok" if outcome else "failed"
        self._audit.record(HUB, "aggregation.round", session, result, server.error or "")
        log.info("round %s %s", session, "completed" if outcome else f"failed: {server.error}")
        self._watch.changed(room.task_id)

    async def _send_to(self, node: str, task_id: str, message: ServerMessage, config: SecAggConfig) -> None:
        # The configuration travels back too, so the node knows which of its rounds this is.
        frames = frames_of(
            encode_message(message), sender=HUB, recipient=node, task_id=task_id, config=config
        )
        with contextlib.suppress(ConfideError):
            await self._send(node, frames)
