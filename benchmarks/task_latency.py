"""End-to-end latency of a small task: submit -> 3 node results opened by the researcher.

Hub and three nodes run as separate processes on loopback (``LocalConsortium``, the same
set-up as ``confide demo``); the researcher is this process. Each task is
``stats.summary`` over two columns of a 400-row table at each node.

    python benchmarks/task_latency.py --tasks 200

prints p50 / p95 / mean and, with ``--write``, replaces the section in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _doc import machine, percentile, write_section

from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium

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
        write_section(
            "task_latency",
            "Task latency (issue 2)",
            [
                f"Command: `python benchmarks/task_latency.py --tasks {args.tasks} --write` "
                f"({machine()}, hub store SQLite, nodes on WebSocket).",
                "",
                "| hub link | tasks | p50 ms | p95 ms | mean ms | min ms | max ms |",
                "|---|---:|---:|---:|---:|---:|---:|",
                *rows,
            ],
        )


if __name__ == "__main__":
    main()
