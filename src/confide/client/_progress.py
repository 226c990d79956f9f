"""Following a task: the rich progress bar of finished runs, and the message when time runs out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from confide.wire import RunStatus

if TYPE_CHECKING:
    from confide.client._results import TaskState

__all__ = ["Progress", "timeout_message"]


def timeout_message(state: TaskState, timeout_s: float) -> str:
    missing = [n for n, s in state.runs.items() if not RunStatus(s).finished]
    details = ", ".join(
        f"{n} ({'online' if state.online.get(n) else 'offline'}, {state.runs[n]})" for n in missing
    )
    return f"task {state.id} did not finish within {timeout_s:.0f} s; still waiting for: {details}"


class Progress:
    """A rich progress bar of finished runs, on stderr."""

    def __init__(self, task_id: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]task {task.fields[task_id]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar = self._progress.add_task("", total=None, task_id=task_id[:8])
        self._progress.start()

    def update(self, state: TaskState) -> None:
        done = sum(1 for s in state.runs.values() if RunStatus(s).finished)
        waiting = [n for n, s in state.runs.items() if not RunStatus(s).finished]
        text = f"waiting for {', '.join(waiting)}" if waiting else state.status
        self._progress.update(self._bar, total=len(state.runs), completed=done, description=text)

    def close(self) -> None:
        self._progress.stop()
