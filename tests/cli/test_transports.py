"""Every transport carries a task end to end over TLS, hub and nodes as separate processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from confide.client import Client, TaskResults
from confide.local import COLLABORATION, LocalConsortium, free_port

PARAMS = {"table": "patients", "columns": ["age"]}


def _summary_with(consortium: LocalConsortium) -> TaskResults:
    """Start the prepared consortium, run one summary task, stop everything."""
    try:
        consortium.start_hub()
        for node_id in consortium.node_ids:
            consortium.start_node(node_id)
        consortium.wait_online()
        with Client(consortium.researcher_kit) as client:
            return client.run(COLLABORATION, "stats.summary", PARAMS, timeout_s=30)
    finally:
        consortium.close()


@pytest.mark.parametrize("transport", ["websocket", "grpc", "longpoll"])
def test_a_task_completes_over_each_transport_with_tls(tmp_path: Path, transport: str) -> None:
    with LocalConsortium(tmp_path / "c", hospitals=2, transports=[transport]) as consortium:
        assert consortium.hub_url.startswith("https://")
        with Client(consortium.researcher_kit) as client:
            results = client.run(COLLABORATION, "stats.summary", PARAMS, timeout_s=30)
        logs = consortium.log_path("node-a").read_text()

    assert [r.ok for r in results] == [True, True]
    assert f"connected to the hub over {transport}" in logs


def test_a_node_falls_back_when_its_first_transports_are_blocked(tmp_path: Path) -> None:
    consortium = LocalConsortium(tmp_path / "c", hospitals=2)
    consortium.prepare()
    # node-b cannot reach the hub's HTTPS port (WebSocket and long-polling are "blocked"):
    # only gRPC, on its own port, gets through
    path = consortium.node_config_path("node-b")
    config = yaml.safe_load(path.read_text())
    config["hub_url"] = f"https://127.0.0.1:{free_port()}"
    config["transports"] = ["websocket", "longpoll", "grpc"]
    path.write_text(yaml.safe_dump(config))
    results = _summary_with(consortium)
    logs = consortium.log_path("node-b").read_text()

    assert [r.ok for r in results] == [True, True]
    assert "transport websocket is unavailable" in logs and "transport longpoll is unavailable" in logs
    assert "connected to the hub over grpc" in logs


def test_hub_refuses_plain_http_unless_asked(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "hub.yaml"
    config.write_text("port: 1\n")

    proc = subprocess.run(
        [sys.executable, "-m", "confide", "hub", "start", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 1
    assert "plain HTTP" in proc.stderr and "--insecure" in proc.stderr


def test_a_node_using_the_os_trust_store_still_reaches_the_hub(tmp_path: Path) -> None:
    consortium = LocalConsortium(tmp_path / "c", hospitals=2)
    consortium.prepare()
    path = consortium.node_config_path("node-b")
    config = yaml.safe_load(path.read_text())
    config["os_trust_store"] = True  # truststore: the system's roots plus the consortium CA
    path.write_text(yaml.safe_dump(config))
    results = _summary_with(consortium)

    assert [r.ok for r in results] == [True, True]
