"""The audit log writer: every call is recorded, off the request's critical path.

Events are queued without waiting and written to the store by one background task, as
many as have queued up in one transaction; ``close`` drains the queue, so a clean
shutdown loses nothing (a crash can lose the events of the last moment).
"""

from __future__ import annotations

import asyncio
import logging
import time

from confide._errors import StoreError
from confide.hub._records import AuditEvent
from confide.hub._store import Store

__all__ = ["AuditLog"]

log = logging.getLogger("confide.hub.audit")


class AuditLog:
    """Queue-backed audit writer over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: asyncio.Queue[AuditEvent | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background writer (inside the running event loop)."""
        self._task = asyncio.create_task(self._run(), name="confide-audit")

    def record(self, actor: str, action: str, target: str, outcome: str, detail: str = "") -> None:
        """Queue one event; never blocks."""
        self._queue.put_nowait(
            AuditEvent(time.time_ns() // 1_000_000, actor, action, target, outcome, detail[:500])
        )

    async def flush(self) -> None:
        """Wait until every queued event is written."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued and stop."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    async def _run(self) -> None:
        stop = False
        while not stop:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            events = [e for e in batch if e is not None]
            stop = len(events) < len(batch)
            try:
                await self._store.audit(*events)
            except StoreError as exc:
                log.error("%d audit event(s) could not be written: %s", len(events), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
