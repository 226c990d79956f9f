"""Relay throughput node -> hub -> node for large payloads, per transport, sealing on.

Two hospitals and the hub run as separate processes on loopback with TLS. node-a
streams ``--size-mb`` MiB to node-b with ``diagnostics.relay`` (sealed 1 MiB chunks,
a window of 8 unacknowledged). Throughput is the sender's: payload size over the time
from its first chunk to the receiver's confirmation. With ``--big-mb`` a further run
over WebSocket relays that much and reports the hub's peak resident memory (VmHWM).

    python benchmarks/relay.py --size-mb 256 --big-mb 1024 --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _doc import machine, write_section

from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def relay(transport: str, size_mb: int) -> tuple[float, int, int]:
    """Throughput (MB/s) and the hub's RSS before / peak during (KiB)."""
    params = {"sender": "node-a", "receiver": "node-b", "size_mb": size_mb, "timeout_s": 600}
    with (
        tempfile.TemporaryDirectory(prefix="confide-relay-") as tmp,
        LocalConsortium(Path(tmp), hospitals=2, transports=[transport]) as consortium,
        Client(consortium.researcher_kit) as client,
    ):
        client.run(
            COLLABORATION, "diagnostics.relay", {**params, "size_mb": 8}, timeout_s=600
        ).raise_for_errors()
        hub = consortium.processes["hub"].pid
        before = _kib(hub, "VmRSS")
        results = client.run(COLLABORATION, "diagnostics.relay", params, timeout_s=900).raise_for_errors()
        peak = _kib(hub, "VmHWM")
    sender, receiver = (r.output or {} for r in results)
    if sender["sha256"] != receiver["sha256"]:
        raise SystemExit("the payload arrived altered")
    return float(sender["mb_per_s"]), before, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--big-mb", type=int, default=0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = []
    for transport in ("websocket", "grpc", "longpoll"):
        rate, _, peak = relay(transport, args.size_mb)
        rows.append(f"| {transport} | {args.size_mb} | {rate:.0f} | {peak / 1024:.0f} |")
        print(rows[-1])
    lines = [
        f"Command: `python benchmarks/relay.py --size-mb {args.size_mb} --big-mb {args.big_mb} --write` "
        f"({machine()}, TLS).",
        "",
        "| transport | payload MiB | throughput MB/s | hub peak RSS MiB |",
        "|---|---:|---:|---:|",
        *rows,
    ]
    if args.big_mb:
        rate, before, peak = relay("websocket", args.big_mb)
        line = (
            f"{args.big_mb} MiB over WebSocket: {rate:.0f} MB/s; hub resident memory "
            f"{before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB (VmHWM)."
        )
        print(line)
        lines += ["", line]
    if args.write:
        write_section("relay", "Relay throughput node -> hub -> node (issue 3)", lines)


if __name__ == "__main__":
    main()
