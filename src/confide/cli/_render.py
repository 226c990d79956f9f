"""Printing results for people (rich tables) and for scripts (``--json``)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from confide.algorithms import Finalised
from confide.client import TaskResults

__all__ = ["print_finalised", "print_json", "print_results"]


def print_json(console: Console, data: Any) -> None:
    """Machine-readable output on stdout."""
    console.print_json(json.dumps(data))


def print_results(console: Console, results: TaskResults) -> None:
    """A table per result shape; errors name the node they came from."""
    summaries = [r for r in results if r.ok and r.output and "columns" in r.output and "rows" in r.output]
    if summaries:
        table = Table(title=f"task {results.task_id}: stats.summary", show_lines=False)
        for header in ("node", "column", "count", "mean", "std", "min", "max"):
            table.add_column(header, justify="left" if header in ("node", "column") else "right")
        for r in summaries:
            for column, s in (r.output or {})["columns"].items():
                table.add_row(
                    r.node,
                    column,
                    str(s["count"]),
                    _num(s["mean"]),
                    _num(s["std"]),
                    _num(s["min"]),
                    _num(s["max"]),
                )
        console.print(table)
    for r in results:
        if r.ok and r not in summaries:
            console.print(f"[bold]{r.node}[/]:")
            console.print_json(json.dumps(r.output))
    for r in results.failed:
        console.print(f"[red]{r.node} failed:[/] {r.error}")


def print_finalised(console: Console, result: Finalised) -> None:
    """Any algorithm's finalised result: its tables, how it was computed, who sat out and why."""
    for shown in result.tables:
        table = Table(title=escape(shown.title))
        for i, header in enumerate(shown.headers):
            table.add_column(escape(header), justify="left" if i == 0 else "right")
        for row in shown.rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    for line in result.notes():
        console.print(escape(line))
    for node, reason in sorted(result.sat_out.items()):
        console.print(f"[yellow]{escape(node)} did not contribute:[/] {escape(reason)}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
