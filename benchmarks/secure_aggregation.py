"""Secure aggregation through the hub vs the unmasked baseline, vs Flower's SecAgg+, and with dropouts.

Hub and n nodes run as separate processes on loopback with TLS (websocket). Each round is
``diagnostics.secure_sum``: every node adds a synthetic vector of ``size`` 64-bit values.

- *secure*: the full protocol (keys, sealed Shamir shares, pairwise + self masks, output
  pads sealed to the researcher, unmasking); timed from the researcher's submit to the
  plain total in the researcher's hands (pads removed).
- *plain*: the same task with an unmasked round: each node sends its vector in the clear
  and the hub sums it; same hub, transport, task path and timing.
- *simulation*: the same protocol code (``run_in_memory``) in one process, no network:
  the figure to set beside Flower's simulation, which also runs in one machine's memory.
- *dropout*: n = 10, 1M values, 3 nodes leave right after sending their masked input.

All rounds sum in Z_2^32, the ring Flower's SecAgg+ uses. Bytes are the aggregation
payloads one node sends and receives in the round (envelope headers excluded).

    python benchmarks/secure_aggregation.py --runs 3 --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _doc import machine, write_section

from confide.algorithms.secure_sum_check import expected_total
from confide.client import Client
from confide.crypto import PartyIdentity, Role
from confide.local import COLLABORATION, LocalConsortium
from confide.protocols.secagg import SecAggClient, SecAggConfig, remove_pads, run_in_memory

SIZES = (100_000, 1_000_000, 4_000_000)
BITS = 32  # the ring Flower's SecAgg+ sums in too (Z_2^32)
NODES = (3, 5, 10)
# Flower 1.41 SecAgg+ on this machine (benchmarks/flower_secaggplus.py, pooled median of 13
# rounds over three runs, 2026-11-22): seconds per round by (n, size).
FLOWER_S = {
    (3, 100_000): 0.43,
    (3, 1_000_000): 0.65,
    (3, 4_000_000): 1.16,
    (5, 100_000): 0.54,
    (5, 1_000_000): 0.89,
    (5, 4_000_000): 1.76,
    (10, 100_000): 0.95,
    (10, 1_000_000): 1.66,
    (10, 4_000_000): 3.53,
}


def one_round(client: Client, nodes: list[str], params: dict[str, object]) -> tuple[float, int, int]:
    started = time.perf_counter()
    task_id = client.submit(COLLABORATION, "diagnostics.secure_sum", params)
    summed = client.secure_sum(task_id, "check", wait_s=600)
    elapsed = time.perf_counter() - started
    length, bits = int(params["length"]), int(params.get("bits", 64))  # type: ignore[call-overload]
    if not np.array_equal(summed.total, expected_total(nodes, list(summed.survivors), length, bits)):
        raise SystemExit(f"wrong total for {params}")
    results = client.results(task_id, wait_s=60)
    sent = [int(r.output["bytes_sent"]) for r in results if r.output and not r.output["left"]]
    received = [int(r.output["bytes_received"]) for r in results if r.output and not r.output["left"]]
    return elapsed, int(statistics.mean(sent)), int(statistics.mean(received))


def through_hub(
    n: int, runs: int, sizes: tuple[int, ...]
) -> dict[tuple[str, int], list[tuple[float, int, int]]]:
    found: dict[tuple[str, int], list[tuple[float, int, int]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="confide-secagg-") as tmp,
        LocalConsortium(Path(tmp), hospitals=n, rows=10, transports=["websocket"]) as consortium,
        Client(consortium.researcher_kit, timeout_s=600) as client,
    ):
        nodes = consortium.node_ids
        one_round(client, nodes, {"length": 1000})  # warm-up: connections, worker pools
        for size in sizes:
            for mode in ("plain", "secure"):
                params = {"length": size, "bits": BITS, "masked": mode == "secure"}
                found[(mode, size)] = [one_round(client, nodes, params) for _ in range(runs)]
                print(
                    f"n={n} size={size} {mode}: {[f'{t:.3f}' for t, _, _ in found[(mode, size)]]} s",
                    flush=True,
                )
        if n == 10:
            dropping = {"length": 1_000_000, "bits": BITS, "leave_after_input": nodes[1:4]}
            found[("dropout", 1_000_000)] = [one_round(client, nodes, dropping) for _ in range(runs)]
            print(f"n=10 dropout: {[f'{t:.3f}' for t, _, _ in found[('dropout', 1_000_000)]]} s", flush=True)
    return found


def simulated(n: int, size: int, runs: int) -> float:
    nodes = tuple(f"n{i:02d}" for i in range(n))
    researcher = PartyIdentity.generate("alice", "uni", Role.RESEARCHER)
    identities = {node: PartyIdentity.generate(node, node, Role.NODE) for node in nodes}
    public = {node: i.public for node, i in identities.items()} | {"alice": researcher.public}
    values = {node: (np.arange(size) * (i + 1)).astype(np.uint32) for i, node in enumerate(nodes)}
    times = []
    for run in range(runs):
        config = SecAggConfig.create(f"sim/{run}", nodes, size, bits=BITS, researcher="alice")
        started = time.perf_counter()
        clients = {
            node: SecAggClient(
                config, identities[node], {k: v for k, v in public.items() if k != node}, values[node]
            )
            for node in nodes
        }
        server = run_in_memory(clients)
        if server.outcome is None:
            raise SystemExit(server.error)
        remove_pads(
            config,
            server.outcome.total,
            server.outcome.survivors,
            server.outcome.pads,
            me=researcher,
            parties=public,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, nargs="*", default=list(NODES))
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--write", action="store_true", help="record the figures in docs/benchmarks.md")
    args = parser.parse_args()
    hub_rows, sim_rows, drop_rows = [], [], []
    for n in args.nodes:
        found = through_hub(n, args.runs, tuple(args.sizes))
        for size in args.sizes:
            plain = statistics.median(t for t, _, _ in found[("plain", size)])
            secure = statistics.median(t for t, _, _ in found[("secure", size)])
            _, p_sent, p_recv = found[("plain", size)][0]
            _, s_sent, s_recv = found[("secure", size)][0]
            hub_rows.append(
                f"| {n} | {size:,} | {plain:.3f} | {secure:.3f} | {secure / plain:.2f}x | "
                f"{p_sent / 1e6:.2f} / {p_recv / 1e6:.3f} | {s_sent / 1e6:.2f} / {s_recv / 1e6:.3f} |"
            )
            sim = simulated(n, size, args.runs)
            flower = FLOWER_S.get((n, size))
            versus = f"{flower:.2f} | {flower / sim:.1f}x" if flower else "- | -"
            sim_rows.append(f"| {n} | {size:,} | {sim:.3f} | {secure:.3f} | {versus} |")
            print(sim_rows[-1], flush=True)
        if ("dropout", 1_000_000) in found:
            times = [t for t, _, _ in found[("dropout", 1_000_000)]]
            full = statistics.median(
                t for t, _, _ in found.get(("secure", 1_000_000), [(float("nan"), 0, 0)])
            )
            drop_rows.append(
                f"| 10 | 1,000,000 | 3 after their masked input | {statistics.median(times):.3f} "
                f"| {full:.3f} |"
            )
    for row in hub_rows:
        print(row)
    if args.write:
        write_section(
            "secure_aggregation",
            "Secure aggregation (issue 4)",
            [
                f"Command: `python benchmarks/secure_aggregation.py --runs {args.runs} --write` "
                f"({machine()}, hub and nodes as separate processes, TLS, websocket, Z_2^32). Median of "
                "the runs; time is submit to the researcher holding the plain total (pads removed). "
                "Bytes: one node's aggregation payload sent / received, MB.",
                "",
                "| nodes | values | plain s | secure s | overhead "
                "| plain bytes out / in | secure bytes out / in |",
                "|---:|---:|---:|---:|---:|---:|---:|",
                *hub_rows,
                "",
                "Against Flower 1.41 SecAgg+ (`benchmarks/flower_secaggplus.py`, its simulation engine, same "
                "machine; pooled median of 13 rounds). confide's *simulation* runs the same protocol code "
                "in one process without network; *through hub* is the first table's secure time.",
                "",
                "| nodes | values | confide simulation s | confide through hub s | Flower SecAgg+ s "
                "| Flower / confide simulation |",
                "|---:|---:|---:|---:|---:|---:|",
                *sim_rows,
                "",
                "| nodes | values | dropouts | secure s with dropouts | secure s without |",
                "|---:|---:|---|---:|---:|",
                *drop_rows,
            ],
        )


if __name__ == "__main__":
    main()
