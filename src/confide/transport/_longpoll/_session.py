"""The hub's end of HTTPS long-polling: each session a queue-backed ``Connection`` for the session loop.

:class:`LongPollHub` holds the sessions and runs the session loop it was given (the hub
passes ``NodeSessions.serve``) once per session, which never learns that no socket
stands behind it. The HTTP endpoints that feed the sessions are in
:mod:`confide.transport._longpoll._routes`; the node's end is
:mod:`confide.transport._longpoll._client`.

Session life:

1. ``POST /lp/sessions`` makes a session with a random 128-bit token and starts
   ``serve(session)`` in the background (the node's first frame is its HELLO);
2. ``POST .../frames`` queues the node's frames for ``session.recv()``; once 64 MiB wait
   unread, further POSTs are held until ``serve`` catches up (back-pressure);
3. ``GET .../frames?wait=s`` is held until ``session.send()`` queued a frame, then takes
   the queue (up to 64 MiB per answer); 204 after ``min(wait, hold_s)`` seconds. One GET
   waits per session: a newer one answers the older with 204;
4. the session ends on ``DELETE``, when ``serve`` returns (frames it queued, such as a
   refusal, can still be collected, and the next GET gets 404 naming the reason), when
   256 MiB queue up uncollected, or when no request came for ``idle_timeout_s`` (a
   periodic sweep, which also forgets ended sessions). ``recv`` then raises
   :class:`TransportError` and ``serve`` ends; later requests get 404.

Frame contents and session tokens are never logged (sessions are logged by number).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator

from confide._errors import TransportError
from confide.transport._base import SessionLoop
from confide.transport._longpoll._framing import LENGTH_SIZE, MAX_BODY, MAX_FRAME

__all__ = ["MAX_QUEUED", "LongPollHub", "LongPollSession"]

# Only the hub runs this end, so it logs under the hub's name (operators filter on it).
log = logging.getLogger("confide.hub.longpoll")
MAX_QUEUED = 256 * 1024 * 1024
"""Bytes queued for a node that does not collect them before its session is closed."""
MAX_SESSIONS = 10_000
CLOSE_WAIT_S = 5.0
_numbers = itertools.count(1)


class LongPollSession:
    """One node's long-poll session: the ``Connection`` the session loop reads and writes."""

    def __init__(self, sid: str, forget: Callable[[str], None]) -> None:
        self.sid = sid
        self.number = next(_numbers)
        self.last_seen = time.monotonic()
        self.busy = 0  # requests in progress; a session with one is never idle
        self.reason: str | None = None  # why it closed; None while open
        self._forget = forget
        self._inbound: deque[bytes] = deque()
        self._inbound_bytes = 0
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._outbound: deque[bytes] = deque()
        self._outbound_bytes = 0
        self._waiter: asyncio.Future[bool] | None = None  # the held GET; True: replaced

    # -- the Connection side, used by ``serve`` ------------------------------------------

    async def send(self, frame: bytes) -> None:
        if self.reason is not None:
            raise TransportError(f"long-poll session #{self.number} is closed: {self.reason}")
        if len(frame) > MAX_FRAME:
            raise TransportError(f"a {len(frame)}-byte frame exceeds the long-poll limit of {MAX_FRAME}")
        if self._outbound_bytes + len(frame) > MAX_QUEUED:
            self.end(f"the node left more than {MAX_QUEUED} bytes uncollected")
            raise TransportError(f"long-poll session #{self.number} is closed: {self.reason}")
        self._outbound.append(frame)
        self._outbound_bytes += len(frame)
        self._wake(replaced=False)

    async def recv(self) -> bytes:
        # Frames the node posted before the end are still handed out, as a socket would.
        while not self._inbound:
            if self.reason is not None:
                raise TransportError(f"long-poll session #{self.number} closed: {self.reason}")
            self._readable.clear()
            await self._readable.wait()
        frame = self._inbound.popleft()
        self._inbound_bytes -= len(frame)
        self._room.set()
        return frame

    async def close(self) -> None:
        self.end("closed by the hub")

    # -- the HTTP side, used by the endpoints ----------------------------------------------

    async def deliver(self, frames: list[bytes]) -> None:
        """Queue the node's frames for ``recv``; waits while 64 MiB are unread."""
        size = sum(len(f) for f in frames)
        with self._request():
            while self.reason is None and self._inbound and self._inbound_bytes + size > MAX_BODY:
                self._room.clear()
                await self._room.wait()
            if self.reason is not None:
                raise TransportError(self.reason)
            self._inbound.extend(frames)
            self._inbound_bytes += size
            self._readable.set()

    async def collect(self, wait_s: float) -> list[bytes]:
        """Queued frames for the node, waiting up to ``wait_s`` for one; [] on timeout."""
        with self._request():
            if self._outbound or self.reason is not None or wait_s <= 0:
                return self._take()
            self._wake(replaced=True)
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(wait_s):
                    if await waiter:
                        return []
            except TimeoutError:
                return []
            finally:
                if self._waiter is waiter:
                    self._waiter = None
            return self._take()

    def end(self, reason: str) -> None:
        """Close the session; the node can still collect what is queued, then learns why."""
        if self.reason is not None:
            return
        self.reason = reason
        log.info("long-poll session #%d closed: %s", self.number, reason)
        self._readable.set()
        self._room.set()
        self._wake(replaced=False)

    def abandon(self, reason: str) -> None:
        """Close the session and drop what the node did not collect."""
        self.end(reason)
        self._outbound.clear()
        self._outbound_bytes = 0
        self._forget(self.sid)

    def _take(self) -> list[bytes]:
        if not self._outbound and self.reason is not None:
            self._forget(self.sid)
            raise TransportError(self.reason)
        frames: list[bytes] = []
        size = 0
        while self._outbound and (not frames or size + LENGTH_SIZE + len(self._outbound[0]) <= MAX_BODY):
            frame = self._outbound.popleft()
            frames.append(frame)
            size += LENGTH_SIZE + len(frame)
        self._outbound_bytes -= size - LENGTH_SIZE * len(frames)
        return frames

    def _wake(self, *, replaced: bool) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(replaced)

    @contextlib.contextmanager
    def _request(self) -> Iterator[None]:
        self.busy += 1
        self.last_seen = time.monotonic()
        try:
            yield
        finally:
            self.busy -= 1
            self.last_seen = time.monotonic()


class LongPollHub:
    """The long-poll sessions of one hub, and the sweep that ends abandoned ones.

    Parameters
    ----------
    serve : the session loop run for each new session (``NodeSessions.serve``).
    hold_s : the longest a GET is held; keep it below proxies' idle timeouts.
    idle_timeout_s : a session with no request for this long is closed.
    max_sessions : more open sessions than this are refused (503).
    """

    def __init__(
        self,
        serve: SessionLoop,
        hold_s: float = 25.0,
        idle_timeout_s: float = 60.0,
        *,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.hold_s = hold_s
        self.idle_timeout_s = idle_timeout_s
        self._serve = serve
        self._max_sessions = max_sessions
        self._sessions: dict[str, LongPollSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        """The number of sessions held (open, or closed with frames left to collect)."""
        return len(self._sessions)

    def start(self) -> None:
        """Start the idle sweep (idempotent; the first request also starts it)."""
        if self._sweeper is None and not self._closed:
            self._sweeper = asyncio.create_task(self._sweep(), name="confide-longpoll-sweep")

    def open(self) -> LongPollSession:
        """A new session whose ``serve`` runs in the background."""
        if self._closed:
            raise TransportError("the hub is shutting down; try again shortly")
        if len(self._sessions) >= self._max_sessions:
            raise TransportError(f"the hub holds {self._max_sessions} long-poll sessions; try again later")
        session = LongPollSession(secrets.token_urlsafe(16), self._forget)
        self._sessions[session.sid] = session
        task = asyncio.create_task(self._run(session), name=f"confide-longpoll-{session.number}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("long-poll session #%d opened", session.number)
        return session

    def session(self, sid: str) -> LongPollSession | None:
        """The session named ``sid``, if it is held."""
        return self._sessions.get(sid)

    async def close(self) -> None:
        """End every session and wait (briefly) for their ``serve`` to return."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session in list(self._sessions.values()):
            session.abandon("the hub is shutting down")
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=CLOSE_WAIT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _forget(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    async def _run(self, session: LongPollSession) -> None:
        try:
            await self._serve(session)
        except TransportError:
            pass  # the session ended under the loop: an ordinary disconnect
        except Exception:
            log.exception("long-poll session #%d: the session loop failed", session.number)
        finally:
            session.end("the hub ended the session")

    async def _sweep(self) -> None:
        every_s = max(0.01, min(self.idle_timeout_s / 4, 5.0))
        while True:
            await asyncio.sleep(every_s)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if session.busy == 0 and now - session.last_seen > self.idle_timeout_s:
                    session.abandon(f"no request from the node for {self.idle_timeout_s:g} s")
