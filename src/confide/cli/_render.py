"""Printing results for people (rich tables) and for scripts (``--json``)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from confide.client import QueryResult, TaskResults
from confide.client._statistics import StatisticResult

__all__ = ["print_json", "print_results", "print_statistic", "statistic_json"]


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


def print_statistic(console: Console, result: StatisticResult) -> None:
    """A federated statistic: its tables, who was summed, who sat out, the privacy spent."""
    for shown in result.tables:
        table = Table(title=shown.title)
        for i, header in enumerate(shown.headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in shown.rows:
            table.add_row(*row)
        console.print(table)
    console.print(
        f"secure aggregation over {len(result.survivors)} node(s): {', '.join(result.survivors)}; "
        f"values from fewer than {result.min_count} rows are suppressed"
    )
    if result.privacy is not None:
        p = result.privacy
        console.print(
            f"differential privacy: epsilon {p.epsilon:.3g} (asked {p.target_epsilon:.3g}), "
            f"delta {p.delta:.3g}, distributed noise from {p.survivors} node(s)"
        )
    for node, reason in sorted(result.refused.items()):
        console.print(f"[yellow]{node} did not contribute:[/] {reason}")


def statistic_json(result: StatisticResult) -> dict[str, Any]:
    """A federated statistic as JSON."""
    privacy = None
    if result.privacy is not None:
        privacy = {"epsilon": result.privacy.epsilon, "delta": result.privacy.delta}
    return {
        "statistic": result.statistic,
        "output": result.output.model_dump(mode="json"),
        "survivors": list(result.survivors),
        "refused": result.refused,
        "min_count": result.min_count,
        "privacy": privacy,
    }


def print_query_result(console: Console, result: QueryResult) -> None:
    """A federated query's rows, who was summed, who sat out, how many groups were withheld."""
    table = Table(title=f"task {result.task_id}")
    for column in result.columns:
        table.add_column(column, justify="right")
    for row in result.rows:
        table.add_row(*(_cell(row.get(c)) for c in result.columns))
    console.print(table)
    console.print(
        f"secure aggregation over {len(result.survivors)} node(s): {', '.join(result.survivors) or 'none'}; "
        f"groups from fewer than {result.min_count} rows are withheld (-)"
        + (f": {result.suppressed} withheld" if result.suppressed else "")
    )
    for node, reason in sorted(result.sat_out.items()):
        console.print(f"[yellow]{node} did not contribute:[/] {reason}")


def query_result_json(result: QueryResult) -> dict[str, Any]:
    """A federated query's result as JSON."""
    return {
        "task": result.task_id,
        "columns": list(result.columns),
        "rows": [dict(row) for row in result.rows],
        "survivors": list(result.survivors),
        "sat_out": dict(result.sat_out),
        "min_count": result.min_count,
        "suppressed": result.suppressed,
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.2f}"
    return str(value)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
