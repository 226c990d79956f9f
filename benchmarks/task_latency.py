"""End-to-end latency of a small task: submit -> 3 node results opened by the researcher.

Hub and three nodes run as separate processes on loopback (``LocalConsortium``, the same
set-up as ``confide demo``); the researcher is this process. Each task is
``stats.summary`` over two columns of a 400-row table at each node.

    python benchmarks/task_latency.py --tasks 200

prints p50 / p95 / mean and, with ``--write``, replaces the section in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from confide.cli._consortium import COLLABORATION, LocalConsortium
from confide.client import Client

PARAMS = {"table": "patients", "columns": ["age", "hippocampus_ml"]}


def measure(tasks: int, warmup: int, tls: bool) -> list[float]:
    with (
        tempfile.TemporaryDirectory(prefix="confide-bench-") as tmp,
        LocalConsortium(Path(tmp), tls=tls, transports=["websocket"]) as consortium,
        Client(consortium.researcher_kit) as client,
    ):
        for _ in range(warmup):
            client.run(COLLABORATION, "stats.summary", PARAMS).raise_for_errors()
        latencies = []
        for _ in range(tasks):
            start = time.perf_counter()
            results = client.run(COLLABORATION, "stats.summary", PARAMS)
            latencies.append((time.perf_counter() - start) * 1000)
            results.raise_for_errors()
            if len(results) != 3:
                raise SystemExit(f"expected 3 results, got {len(results)}")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="record the figures in docs/benchmarks.md")
    args = parser.parse_args()
    rows = []
    for tls in (True, False):
        latencies = measure(args.tasks, args.warmup, tls)
        p50, p95, mean = percentile(latencies, 50), percentile(latencies, 95), statistics.mean(latencies)
        mode = "TLS (https + wss)" if tls else "plain (--insecure)"
        rows.append(
            f"| {mode} | {args.tasks} | {p50:.1f} | {p95:.1f} | {mean:.1f} | "
            f"{min(latencies):.1f} | {max(latencies):.1f} |"
        )
        print(f"{mode}: tasks={args.tasks} p50={p50:.1f} ms p95={p95:.1f} ms mean={mean:.1f} ms")
    if args.write:
        _write("\n".join(rows), args.tasks)


def _write(row: str, tasks: int) -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start, end = "<!-- task_latency:start -->", "<!-- task_latency:end -->"
    section = "\n".join(
        [
            start,
            f"Command: `python benchmarks/task_latency.py --tasks {tasks} --write` "
            f"({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, hub store SQLite, nodes on WebSocket).",
            "",
            "| hub link | tasks | p50 ms | p95 ms | mean ms | min ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
            row,
            end,
        ]
    )
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n## Task latency (issue 2)\n\n" + section + "\n"
    doc.write_text(text)


if __name__ == "__main__":
    main()
