"""Ring secure sum over 3 nodes, per transport: the vantage6 node-to-node study's benchmark.

Hub and three nodes run as separate processes on loopback with TLS; each node uses only
the transport under test. For each run we record the whole task (researcher's submit to
the opened results) and ``ring_ms``: the initiator's time from sending its masked value
to receiving the ring's sum back (two node-to-node hops relayed by the hub, plus the last
one back), which is what the vantage6 study's 3.1 s (VMs) / 10 s (VPN) measured.

    python benchmarks/ring_sum.py --runs 100 --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _doc import machine, percentile, write_section

from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium

PARAMS = {"table": "patients", "column": "hippocampus_ml", "decimals": 3}


def measure(transport: str, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    import time

    with (
        tempfile.TemporaryDirectory(prefix="confide-ring-") as tmp,
        LocalConsortium(Path(tmp), transports=[transport]) as consortium,
        Client(consortium.researcher_kit) as client,
    ):
        for _ in range(warmup):
            client.run(COLLABORATION, "secure.ring_sum", PARAMS).raise_for_errors()
        tasks, rings = [], []
        for _ in range(runs):
            start = time.perf_counter()
            results = client.run(COLLABORATION, "secure.ring_sum", PARAMS).raise_for_errors()
            tasks.append((time.perf_counter() - start) * 1000)
            output = results.results[0].output or {}
            rings.append(float(output["ring_ms"]))
    return tasks, rings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="record the figures in docs/benchmarks.md")
    args = parser.parse_args()
    rows = []
    for transport in ("websocket", "grpc", "longpoll"):
        tasks, rings = measure(transport, args.runs, args.warmup)
        row = (
            f"| {transport} | {args.runs} | {percentile(rings, 50):.1f} | {percentile(rings, 95):.1f} | "
            f"{percentile(tasks, 50):.1f} | {percentile(tasks, 95):.1f} | {statistics.mean(tasks):.1f} |"
        )
        print(row)
        rows.append(row)
    if args.write:
        write_section(
            "ring_sum",
            "Ring secure sum over 3 nodes (issue 3)",
            [
                f"Command: `python benchmarks/ring_sum.py --runs {args.runs} --write` ({machine()}, TLS).",
                "",
                "| transport | runs | ring p50 ms | ring p95 ms | task p50 ms | task p95 ms | task mean ms |",
                "|---|---:|---:|---:|---:|---:|---:|",
                *rows,
            ],
        )


if __name__ == "__main__":
    main()
