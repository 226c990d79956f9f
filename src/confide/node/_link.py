"""The node's link to the hub: dial out, say hello, keep it alive, deliver frames reliably.

The node always dials out (:class:`~confide.transport.Connector`: WebSocket, gRPC or
long-polling, through the configured proxy). The link:

1. connects, with exponential backoff and full jitter (1 s doubling to 30 s) while the
   hub cannot be reached; refused credentials stop it with :class:`AuthError` instead;
2. says ``HELLO`` with the node's token and waits for ``WELCOME``;
3. resends, in their original order, the frames the hub never acknowledged, before
   anything new goes out (a stream's chunks must not overtake each other);
4. sends a heartbeat every ``heartbeat_s`` and gives the connection up when the hub has
   been silent for three of them (a dead link without a FIN);
5. hands every other frame to the node's :class:`FrameHandler`; ``ACK`` frames release
   what they acknowledge.

Frames are sent three ways: *reliably* (kept until acknowledged, resent after a
reconnect: results, peer messages), *now* (not resent: secure-aggregation messages,
where losing the link means dropping out of the round) and *quietly* (best effort, in the
background: acknowledgements, progress).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from typing import Any, Protocol

from confide._errors import AuthError, ConfideError, ProtocolError, TransportError, WireError
from confide._version import __version__
from confide.kit import Kit
from confide.transport import Connection, Connector
from confide.wire import (
    HUB,
    Ack,
    Envelope,
    ErrorNotice,
    Heartbeat,
    Hello,
    MessageKind,
    Welcome,
    decode_control,
    encode_control,
)

__all__ = ["FrameHandler", "HubLink"]

log = logging.getLogger("confide.node")
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0


class FrameHandler(Protocol):
    """What the node does with a frame from the hub that the link does not handle itself."""

    async def on_frame(self, envelope: Envelope) -> None:
        """Handle one frame (``RUN``, ``PEER``, ``PEER_CHUNK``, ``AGGREGATION``)."""
        ...


class HubLink:
    """One node's connection to the hub, made again whenever it is lost."""

    def __init__(
        self, kit: Kit, connector: Connector, handler: FrameHandler, *, heartbeat_s: float, hub_url: str
    ) -> None:
        self._kit = kit
        self._connector = connector
        self._handler = handler
        self._heartbeat_s = heartbeat_s
        self._hub_url = hub_url
        self.connected = asyncio.Event()
        self.connection: Connection | None = None
        self._unacked: dict[str, bytes] = {}  # by message id, in sending order
        self._ack_waiters: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def node_id(self) -> str:
        """The node's party id."""
        return self._kit.party_id

    async def run(self) -> None:
        """Stay connected until cancelled (step 1); :class:`AuthError` if credentials are refused."""
        delay = BACKOFF_START_S
        try:
            while True:
                try:
                    conn = await self._connector.connect()
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
                    self.connection = None
                    with contextlib.suppress(ConfideError):
                        await conn.close()
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _session(self, conn: Connection) -> None:
        welcome = await self._hello(conn)
        # Step 3: resend what the hub never acknowledged, in the original order.
        resent: set[str] = set()
        while pending := [(k, v) for k, v in self._unacked.items() if k not in resent]:
            for key, frame in pending:
                await conn.send(frame)
                resent.add(key)
        self.connection = conn
        self.connected.set()
        every_s = min(welcome.heartbeat_s, self._heartbeat_s)
        heartbeat = asyncio.create_task(self._heartbeats(conn, every_s))
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(conn.recv(), 3 * every_s)
                except TimeoutError:
                    raise TransportError(f"no frame from the hub for {3 * every_s:.0f} s") from None
                try:
                    await self._on_frame(Envelope.decode(frame))
                except (WireError, ProtocolError) as exc:
                    # One malformed frame is refused, not allowed to end the node.
                    log.warning("a frame from the hub was refused: %s", exc)
        finally:
            heartbeat.cancel()

    async def _hello(self, conn: Connection) -> Welcome:
        hello = Hello(node_id=self.node_id, token=self._kit.token, software=__version__)
        await conn.send(encode_control(hello, self.node_id, HUB).encode())
        first = Envelope.decode(await conn.recv())
        if first.kind is MessageKind.ERROR:
            notice, _ = decode_control(first, ErrorNotice)
            raise AuthError(f"the hub refused node {self.node_id!r}: {notice.message}")
        welcome, _ = decode_control(first, Welcome)
        log.info(
            "connected to %s over %s; collaborations: %s",
            self._hub_url,
            self._connector.name,
            ", ".join(welcome.collaborations) or "none",
        )
        return welcome

    async def _heartbeats(self, conn: Connection, every_s: float) -> None:
        with contextlib.suppress(TransportError):
            while True:
                await asyncio.sleep(every_s)
                await conn.send(encode_control(Heartbeat(), self.node_id, HUB).encode())

    async def _on_frame(self, envelope: Envelope) -> None:
        if envelope.kind is MessageKind.ACK:
            ack, _ = decode_control(envelope, Ack)
            self._unacked.pop(ack.message_id, None)
            waiter = self._ack_waiters.pop(ack.message_id, None)
            if waiter is not None:
                waiter.set()
        elif envelope.kind is MessageKind.ERROR:
            notice, _ = decode_control(envelope, ErrorNotice)
            log.error("the hub rejected a frame: %s", notice.message)
        elif envelope.kind is not MessageKind.HEARTBEAT:
            await self._handler.on_frame(envelope)

    # --- sending ------------------------------------------------------------------
    async def send_reliably(self, envelope: Envelope) -> asyncio.Event:
        """Send a frame the hub acknowledges; it is resent after a reconnect until it is.

        Returns an event set on the acknowledgement (flow control for streams).
        """
        key = envelope.message_id.hex()
        acked = self._ack_waiters.setdefault(key, asyncio.Event())
        frame = envelope.encode()
        self._unacked[key] = frame
        conn = self.connection
        if conn is not None:
            with contextlib.suppress(TransportError):
                await conn.send(frame)
        return acked

    async def send_now(self, envelope: Envelope) -> None:
        """Send a frame that is not resent: losing the connection means leaving the round."""
        conn = self.connection
        if conn is None:
            raise ProtocolError("not connected to the hub; this node drops out of the secure aggregation")
        try:
            await conn.send(envelope.encode())
        except TransportError as exc:
            raise ProtocolError(
                f"lost the hub connection ({exc}); this node drops out of the round"
            ) from None

    async def send_best_effort(self, frame: bytes) -> None:
        """Send a frame if connected; a lost link loses it (progress, acknowledgements)."""
        conn = self.connection
        if conn is not None:
            with contextlib.suppress(TransportError):
                await conn.send(frame)

    def send_quietly(self, frame: bytes) -> None:
        """Send a frame from synchronous code, in the background, without waiting for it."""
        if self.connection is not None:
            self._background(self.send_best_effort(frame))

    def acknowledge(self, envelope: Envelope) -> None:
        """Tell the hub a relayed frame arrived, so it leaves the mailbox."""
        ack = encode_control(Ack(message_id=envelope.message_id.hex()), self.node_id, HUB)
        self.send_quietly(ack.encode())

    async def drop(self) -> None:
        """Close the hub connection (it is made again at once): a deliberate dropout."""
        conn = self.connection
        if conn is not None:
            with contextlib.suppress(ConfideError):
                await conn.close()

    def _background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work, name="send")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
