"""Processes started for a local consortium shut down cleanly, worker processes included."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from confide.local import LocalConsortium, _consortium


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in out.split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_sigterm_stops_a_node_and_its_worker_processes(tmp_path: Path) -> None:
    consortium = LocalConsortium(Path(os.path.relpath(tmp_path / "c")), hospitals=1)
    with consortium:
        node = consortium.processes["node-a"]
        workers = _children(node.pid)
        assert workers, "the node should have started its worker processes"

        code = consortium.stop("node-a")  # SIGTERM

        assert code == 0
        deadline = time.monotonic() + 10  # the pool's shutdown joins its workers
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers)


def test_workers_of_a_killed_node_leave_too(tmp_path: Path) -> None:
    with LocalConsortium(tmp_path / "c", hospitals=1) as consortium:
        node = consortium.processes["node-a"]
        workers = _children(node.pid)
        assert workers

        consortium.stop("node-a", kill=True)  # SIGKILL: no chance to stop the pool

        deadline = time.monotonic() + 15  # workers check their parent every second
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers)


def test_free_ports_lie_below_the_kernels_ephemeral_range_and_can_be_bound() -> None:
    # Outgoing connections take ports from the ephemeral range; a hub port chosen there
    # could be taken before the hub binds it (seen in CI as "address already in use").
    low = _consortium._ephemeral_low()
    ports = {_consortium.free_port() for _ in range(20)}

    if low > 10_000:
        assert all(10_000 <= p < low for p in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
