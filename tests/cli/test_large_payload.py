"""A large payload relays node -> hub -> node while the hub's memory stays bounded."""

from __future__ import annotations

from pathlib import Path

from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium


def _kib(pid: int, field: str) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def test_hub_memory_does_not_grow_with_the_payload(tmp_path: Path) -> None:
    params = {"sender": "node-a", "receiver": "node-b", "timeout_s": 120}
    with (
        LocalConsortium(tmp_path / "c", hospitals=2, transports=["websocket"]) as consortium,
        Client(consortium.researcher_kit) as client,
    ):
        client.run(
            COLLABORATION, "diagnostics.relay", {**params, "size_mb": 4}, timeout_s=120
        ).raise_for_errors()
        hub = consortium.processes["hub"].pid
        before = _kib(hub, "VmRSS")
        results = client.run(COLLABORATION, "diagnostics.relay", {**params, "size_mb": 128}, timeout_s=120)
        peak = _kib(hub, "VmHWM")

    sender, receiver = (r.output or {} for r in results.raise_for_errors())
    assert sender["sha256"] == receiver["sha256"] and receiver["bytes"] == 128 * 1024 * 1024
    # 128 MiB went through; the hub held at most a window of chunks (8 x 1 MiB) and buffers
    assert (peak - before) / 1024 < 48, f"hub grew by {(peak - before) / 1024:.0f} MiB"
