"""A whole consortium on this machine: hub and nodes as separate processes on loopback.

Used by ``confide demo``, ``confide fl sweep``, the end-to-end tests and the benchmarks.
``LocalConsortium`` provisions kits, writes sample data and configs, starts ``confide hub
start`` and one ``confide node start`` per hospital, and waits until every node is online;
leaving the ``with`` block stops them all (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from confide._errors import ConfideError
from confide.kit import ConsortiumSpec, provision_spec
from confide.local._sample import PATIENT_COLUMNS, write_patients

__all__ = ["COLLABORATION", "LocalConsortium", "TableWriter", "free_port", "write_sample_patients"]

TableWriter = Callable[[str, int, Path], list[dict[str, Any]]]
"""Writes one node's data into its folder and returns its ``data:`` entries for ``node.yaml``.

Called with the node id, its index (0, 1, ...) and its folder; paths in the entries are
relative to that folder.
"""

COLLABORATION = "brain-study"
RESEARCHER = "alice"
OUTSIDER = "bob"


def free_port() -> int:
    """A TCP port free on loopback now, and outside the range the kernel gives outgoing connections.

    The port is chosen before the hub binds it. A port from ``bind(0)`` lies in the kernel's
    ephemeral range, where any outgoing connection made in between (a node, a test's client)
    may take it; below that range only another listener can.
    """
    low = _ephemeral_low()
    for _ in range(64):
        port = 10_000 + secrets.randbelow(low - 10_000) if low > 10_000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            found: int = s.getsockname()[1]
            return found
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        fallback: int = s.getsockname()[1]
        return fallback


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (Linux), or 0 where unknown."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def write_sample_patients(index: int, folder: Path, rows: int) -> list[dict[str, Any]]:
    """The demo's data: synthetic patients, CSV at the first two hospitals, Parquet at the third."""
    data_file = folder / ("patients.parquet" if index == 2 else "patients.csv")
    write_patients(data_file, index, rows)
    return [
        {
            "name": "patients",
            "format": data_file.suffix[1:],
            "path": data_file.name,
            "columns": PATIENT_COLUMNS,
        }
    ]


ALGORITHMS = (
    "stats.summary",
    "secure.ring_sum",
    "diagnostics.relay",
    "diagnostics.secure_sum",
    "stats.moments",
    "stats.histogram",
    "stats.crosstab",
    "stats.correlation",
    "stats.zscore",
    "query.sql",
    "fl.train",
    "fl.evaluate",
)
"""What the local consortium's nodes allow: every built-in algorithm."""


class LocalConsortium:
    """Three (or ``hospitals``) hospitals, one researcher, one hub, all local processes."""

    def __init__(
        self,
        root: Path,
        *,
        hospitals: int = 3,
        rows: int = 400,
        port: int = 0,
        extra_env: dict[str, str] | None = None,
        tls: bool = True,
        transports: list[str] | None = None,
        tables: TableWriter | None = None,
        training: TableWriter | None = None,
        policy: dict[str, Any] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.training = training
        self.policy = policy or {}
        self.hospitals = hospitals
        self.rows = rows
        self.port = port or free_port()
        self.grpc_port = free_port()
        self.tls = tls
        self.transports = transports
        self.tables = tables or (lambda node_id, index, folder: write_sample_patients(index, folder, rows))
        self.hub_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.node_ids = [f"node-{chr(ord('a') + i)}" for i in range(hospitals)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._env = {**os.environ, **(extra_env or {})}

    @property
    def kits(self) -> Path:
        """Where the kits are."""
        return self.root / "kits"

    @property
    def researcher_kit(self) -> Path:
        """The researcher's kit."""
        return self.kits / "researchers" / RESEARCHER

    def log_path(self, name: str) -> Path:
        """The log file of process ``name`` (``hub`` or a node id)."""
        return self.root / "logs" / f"{name}.log"

    def node_config_path(self, node_id: str) -> Path:
        """The ``node.yaml`` of ``node_id``."""
        return self.root / node_id / "node.yaml"

    def prepare(self) -> None:
        """Provision kits, write sample data and configs (nothing is started)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        spec = ConsortiumSpec.model_validate(
            {
                "consortium": "demo",
                "hub": {"url": self.hub_url, "grpc_port": self.grpc_port},
                "organisations": [
                    {"id": f"hospital-{n[-1]}", "name": f"Hospital {n[-1].upper()}"} for n in self.node_ids
                ],
                "nodes": [{"id": n, "organisation": f"hospital-{n[-1]}"} for n in self.node_ids],
                # bob exists but is not in the study: he shows that membership is enforced
                "researchers": [
                    {"id": RESEARCHER, "organisation": "hospital-a"},
                    {"id": OUTSIDER, "organisation": "hospital-a"},
                ],
                "collaborations": [
                    {
                        "id": COLLABORATION,
                        "name": "Brain volumes",
                        "nodes": self.node_ids,
                        "researchers": [RESEARCHER],
                    }
                ],
            }
        )
        provision_spec(spec, self.kits, force=True)
        for index, node_id in enumerate(self.node_ids):
            config = self._node_config(node_id, index)
            self.node_config_path(node_id).write_text(yaml.safe_dump(config, sort_keys=False))
        hub_yaml = self.kits / "hub" / "hub.yaml"
        settings = yaml.safe_load(hub_yaml.read_text())
        settings.update({"port": self.port, "log_level": "warning"})
        hub_yaml.write_text(yaml.safe_dump(settings, sort_keys=False))

    def _node_config(self, node_id: str, index: int) -> dict[str, Any]:
        """One node's node.yaml: its kit, its sample data and a policy allowing every algorithm."""
        folder = self.root / node_id
        folder.mkdir(exist_ok=True)
        data = self.tables(node_id, index, folder)
        return {
            "kit": str(self.kits / "nodes" / node_id),
            "data": data,
            **({"training_data": self.training(node_id, index, folder)} if self.training else {}),
            **({"transports": self.transports} if self.transports else {}),
            "policy": {
                "collaborations": [COLLABORATION],
                "researchers": [RESEARCHER],
                "algorithms": list(ALGORITHMS),
                "min_count": 5,
                "privacy_budget": {"epsilon": 3.0, "delta": 1e-5},
                # Synthetic data: the demo and the examples show exact per-node summaries
                # (extremes included) and exact secure sums beside DP ones. A hospital's
                # node.yaml leaves require_dp on with its privacy_budget, and extremes off.
                "require_dp": False,
                "tables": {entry["name"]: {"allow_extremes": True} for entry in data},
                **self.policy,
            },
        }

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context trusting this consortium's CA."""
        return ssl.create_default_context(cafile=self.kits / "ca" / "ca.crt")

    def start_hub(self) -> None:
        """Start the hub process and wait for its health check."""
        self._spawn("hub", ["hub", "start", "--config", str(self.kits / "hub" / "hub.yaml")])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._check_alive("hub")
            try:
                health = httpx.get(self.hub_url + "/health", timeout=1, verify=self.tls_context())
                if health.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise ConfideError(f"the hub did not come up within 30 s; see {self.log_path('hub')}")

    def start_node(self, node_id: str) -> None:
        """Start one node process (does not wait for it to connect)."""
        self._spawn(node_id, ["node", "start", "--config", str(self.node_config_path(node_id))])

    def wait_online(self, node_ids: list[str] | None = None, timeout_s: float = 60.0) -> None:
        """Wait until the hub reports every node online."""
        from confide.client import Client

        wanted = set(node_ids or self.node_ids)
        deadline = time.monotonic() + timeout_s
        with Client(self.researcher_kit) as client:
            while time.monotonic() < deadline:
                for name in ["hub", *wanted]:
                    self._check_alive(name)
                info = client._request("GET", f"/api/collaborations/{COLLABORATION}")
                if wanted <= {n["id"] for n in info["nodes"] if n["online"]}:
                    return
                time.sleep(0.05)
        raise ConfideError(
            f"nodes {', '.join(sorted(wanted))} did not connect within {timeout_s:.0f} s; "
            f"see {self.root / 'logs'}"
        )

    def start(self) -> LocalConsortium:
        """Prepare, start the hub and every node, and wait until all are online."""
        self.prepare()
        self.start_hub()
        for node_id in self.node_ids:
            self.start_node(node_id)
        self.wait_online()
        return self

    def stop(self, name: str, kill: bool = False) -> int | None:
        """Stop one process; return its exit code."""
        proc = self.processes.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def close(self) -> None:
        """Stop every process, nodes first."""
        for name in [n for n in self.processes if n != "hub"] + ["hub"]:
            self.stop(name)

    def __enter__(self) -> LocalConsortium:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _spawn(self, name: str, args: list[str]) -> None:
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            raise ConfideError(f"{name} is already running (pid {running.pid}); stop it first")
        log = self.log_path(name).open("ab")
        self.processes[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "confide", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self.root,
        )
        log.close()

    def _check_alive(self, name: str) -> None:
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is not None:
            tail = self.log_path(name).read_text(errors="replace").splitlines()[-15:]
            raise ConfideError(f"{name} exited with status {proc.returncode}:\n" + "\n".join(tail))

    def describe(self) -> dict[str, Any]:
        """Where things are, for people."""
        return {"root": str(self.root), "hub": self.hub_url, "nodes": self.node_ids}
