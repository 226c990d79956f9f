"""Wake-ups for researchers long-polling a task: one event per watched task, replaced on change.

A waiter takes the task's event *before* reading the task's state, and a writer signals
only *after* its store write; so a change is either seen by the read or wakes the wait.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TaskWatch"]


class TaskWatch:
    """Per-task change notification."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, task_id: str) -> asyncio.Event:
        """The event that the next change of ``task_id`` will set."""
        return self._events.setdefault(task_id, asyncio.Event())

    def changed(self, task_id: str) -> None:
        """Signal a change of ``task_id`` to everyone waiting on it."""
        event = self._events.pop(task_id, None)
        if event is not None:
            event.set()

    @staticmethod
    async def wait(event: asyncio.Event, timeout_s: float) -> None:
        """Wait for ``event`` at most ``timeout_s`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
