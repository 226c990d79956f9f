"""A real network: the hub, the hospitals' proxies and three hospitals on separate hosts.

Each host is a Linux network namespace (``ip netns``) wired with veth pairs; the
addresses exist only inside the test's own namespaces, never on the machine's network::

    cfN-h1  10.231.1.2 --veth-- 10.231.1.1  \\
    cfN-h2  10.231.2.2 --veth-- 10.231.2.1   cfN-proxy 10.231.0.1 --veth-- 10.231.0.2 cfN-hub
    cfN-h3  10.231.3.2 --veth-- 10.231.3.1  /  (tinyproxy A, B, C)    (HTTPS :8443, gRPC :8444)

(``N`` is the test's process id, so concurrent runs do not collide.) A hospital has
only its own link's route: no default route and no route to 10.231.0.0/24, and the
proxy host does not forward packets, so the hub is out of reach except through the
hospital's proxy. Each hospital has its own tinyproxy (Debian's, installed by the
fixture if missing), listening on that hospital's link:

* A (hospital 1): CONNECT allowed to the hub's HTTPS and gRPC ports.
* B (hospital 2): CONNECT allowed to the HTTPS port only, the usual "HTTPS only"
  proxy; gRPC, on its own port, is refused. Hospital 2 lists gRPC first and falls
  back to WebSocket.
* C (hospital 3): CONNECT to the HTTPS port is refused, only the gRPC port is
  allowed: the WebSocket is refused (and HTTPS long-polling with it, on the same
  port). Hospital 3 lists ``websocket, longpoll, grpc`` and falls back to gRPC.

The blocking is CONNECT filtering (``ConnectPort``) because that is what a forward
proxy can see of a TLS connection: the ``Upgrade: websocket`` request travels inside
the tunnel, out of the proxy's sight unless it inspects TLS. (Running the hub over
plain HTTP would not expose the upgrade either: ``websockets`` tunnels through every
HTTP proxy with CONNECT, ``ws://`` included.) Deployments use TLS, so the test does.

The consortium is provisioned by :class:`LocalConsortium`, with the hub's certificate
issued for the hub's address; every process runs in its namespace through
``ip netns exec``, the researcher's client in the hub's. The ring secure sum must
complete with one hospital on gRPC and the others on WebSocket. Without root, without
namespace support or without tinyproxy the test is skipped, and the reason says which.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from confide.kit import ConsortiumSpec, provision_spec
from confide.local import COLLABORATION, LocalConsortium, patients

HUB_IP = "10.231.0.2"
PROXY_HUB_SIDE_IP = "10.231.0.1"
HTTPS_PORT = 8443
GRPC_PORT = 8444
ROWS = 200
HOSPITALS = ("h1", "h2", "h3")
NODE_OF = {"h1": "node-a", "h2": "node-b", "h3": "node-c"}
# hospital -> (its proxy's address, port, ports the proxy lets CONNECT reach, node transports)
PROXIES = {
    "h1": ("10.231.1.1", 3128, (HTTPS_PORT, GRPC_PORT), ["websocket", "grpc", "longpoll"]),
    "h2": ("10.231.2.1", 3129, (HTTPS_PORT,), ["grpc", "websocket", "longpoll"]),
    "h3": ("10.231.3.1", 3130, (GRPC_PORT,), ["websocket", "longpoll", "grpc"]),
}
PROXY_ENV = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy"}
CONNECTED = "connected to the hub over"
KNOWN_HOSTS = {"hub", "proxy", *HOSPITALS, "probe1", "probe2"}
APT_DEADLINE_S = 150

# the first run on a fresh machine may spend a while installing tinyproxy (bounded above)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(APT_DEADLINE_S + 90)]


def _run(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _must(args: list[str]) -> None:
    proc = _run(args)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")


def _clean_env() -> dict[str, str]:
    """This environment without proxy settings: only node.yaml's proxies may apply."""
    return {k: v for k, v in os.environ.items() if k.lower() not in PROXY_ENV}


# --- capabilities ---------------------------------------------------------------------


def _namespaces_unavailable() -> str | None:
    """Why namespaces with veth links cannot be made here, or ``None`` if they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = [f"cf{os.getpid()}-probe1", f"cf{os.getpid()}-probe2"]
    steps = [
        ["ip", "netns", "add", probe[0]],
        ["ip", "netns", "add", probe[1]],
        ["ip", "-n", probe[0], "link", "add", "p0", "type", "veth", "peer", "name", "p1", "netns", probe[1]],
        ["ip", "netns", "exec", probe[0], "true"],
    ]
    try:
        for step in steps:
            proc = _run(step)
            if proc.returncode != 0:
                return f"`{' '.join(step)}` failed: {proc.stderr.strip() or proc.returncode}"
        return None
    finally:
        for name in probe:
            _run(["ip", "netns", "del", name])


def _tinyproxy_unavailable() -> str | None:
    """Install Debian's tinyproxy if it is missing; why it cannot be had, or ``None``."""
    if shutil.which("tinyproxy") or Path("/usr/bin/tinyproxy").exists():
        return None
    if shutil.which("apt-get") is None:
        return "tinyproxy is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + APT_DEADLINE_S

    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        left = max(1.0, deadline - time.monotonic())
        return subprocess.run(
            ["apt-get", *args], capture_output=True, text=True, timeout=left, check=False, env=env
        )

    try:
        installed = apt("install", "-y", "--no-install-recommends", "tinyproxy")
        if installed.returncode != 0:
            apt("update")
            installed = apt("install", "-y", "--no-install-recommends", "tinyproxy")
    except subprocess.TimeoutExpired:
        return "installing tinyproxy with apt-get timed out"
    if installed.returncode != 0 or not Path("/usr/bin/tinyproxy").exists():
        tail = (installed.stderr or installed.stdout).strip().splitlines()[-3:]
        return "tinyproxy could not be installed: " + " / ".join(tail)
    return None


# --- the network ----------------------------------------------------------------------


@dataclass
class Network:
    """The test's hosts: one namespace each, named after this process."""

    prefix: str
    made: list[str] = field(default_factory=list)
    tinyproxies: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def exec_args(self, host: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *args]

    def python(self, host: str, script: str, *args: str, timeout: float = 30) -> Any:
        """Run ``script`` with this interpreter inside ``host``; its stdout is JSON."""
        proc = subprocess.run(
            self.exec_args(host, sys.executable, "-c", script, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=_clean_env(),
        )
        assert proc.returncode == 0, f"script in {host} failed ({proc.returncode}):\n{proc.stderr}"
        return json.loads(proc.stdout)

    def add(self, host: str) -> None:
        _must(["ip", "netns", "add", self.ns(host)])
        self.made.append(self.ns(host))
        _must(["ip", "-n", self.ns(host), "link", "set", "lo", "up"])

    def link(self, a: str, a_ip: str, b: str, b_ip: str) -> None:
        """A veth pair between hosts ``a`` and ``b`` with a /24 on each end."""
        a_if, b_if = f"to-{b}", f"to-{a}"
        _must(
            [
                "ip",
                "-n",
                self.ns(a),
                "link",
                "add",
                a_if,
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                self.ns(b),
            ]
        )
        for host, dev, ip in ((a, a_if, a_ip), (b, b_if, b_ip)):
            _must(["ip", "-n", self.ns(host), "addr", "add", f"{ip}/24", "dev", dev])
            _must(["ip", "-n", self.ns(host), "link", "set", dev, "up"])

    def start_tinyproxy(
        self, folder: Path, name: str, listen: str, port: int, allow: str, ports: tuple[int, ...]
    ) -> None:
        """tinyproxy in the proxy host, letting CONNECT reach only ``ports``."""
        conf = folder / f"tinyproxy-{name}.conf"
        log = folder / f"tinyproxy-{name}.log"
        lines = [
            f"Port {port}",
            f"Listen {listen}",
            "Timeout 600",
            "MaxClients 50",
            "LogLevel Info",
            "DisableViaHeader Yes",
            f"Allow {allow}",
            *(f"ConnectPort {p}" for p in ports),
        ]
        conf.write_text("\n".join(lines) + "\n")
        with log.open("ab") as out:
            self.tinyproxies.append(
                subprocess.Popen(
                    self.exec_args("proxy", "tinyproxy", "-d", "-c", str(conf)),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    def teardown(self) -> None:
        for proc in self.tinyproxies:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.tinyproxies:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for name in reversed(self.made):
            _delete_namespace(name)
        self.made.clear()


def _delete_namespace(name: str) -> None:
    """Delete one of this test's namespaces, killing first whatever of ours is still inside."""
    for pid in _run(["ip", "netns", "pids", name]).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _run(["ip", "netns", "del", name])  # takes the veth ends inside with it


def _remove_stale_namespaces() -> None:
    """Namespaces left by an earlier run of this test that was killed outright."""
    for line in _run(["ip", "netns", "list"]).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith("cf"):
            continue
        pid, _, host = name[2:].partition("-")
        if (
            host in KNOWN_HOSTS
            and pid.isdigit()
            and int(pid) != os.getpid()
            and not Path(f"/proc/{pid}").exists()
        ):
            _delete_namespace(name)


WAIT_FOR_PORT = """
import json, socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        socket.create_connection((host, port), timeout=1).close()
        print(json.dumps(True)); break
    except OSError:
        if time.monotonic() > deadline:
            print(json.dumps(False)); break
        time.sleep(0.02)
"""


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, Path]]:
    """Hub, proxy and hospital hosts, with the three tinyproxies running."""
    reason = _namespaces_unavailable() or _tinyproxy_unavailable()
    if reason:
        pytest.skip(f"no real-network test here: {reason}")
    _remove_stale_namespaces()
    folder = tmp_path_factory.mktemp("netns")
    net = Network(f"cf{os.getpid()}")
    try:
        for host in ("hub", "proxy", *HOSPITALS):
            net.add(host)
        # the proxy host only proxies: it never routes between hospitals and the hub
        _must(net.exec_args("proxy", "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"))
        net.link("proxy", PROXY_HUB_SIDE_IP, "hub", HUB_IP)
        for index, host in enumerate(HOSPITALS, start=1):
            net.link("proxy", f"10.231.{index}.1", host, f"10.231.{index}.2")
        for host, (listen, port, ports, _) in PROXIES.items():
            subnet = listen.rsplit(".", 1)[0] + ".0/24"
            net.start_tinyproxy(folder, host, listen, port, subnet, ports)
        for host, (listen, port, _, _) in PROXIES.items():
            assert net.python(host, WAIT_FOR_PORT, listen, str(port), "10"), f"tinyproxy for {host} is not up"
        yield net, folder
    finally:
        net.teardown()


# --- the consortium -------------------------------------------------------------------


class NetnsConsortium(LocalConsortium):
    """A LocalConsortium whose hub and nodes run in their own network namespaces."""

    def __init__(self, root: Path, net: Network) -> None:
        super().__init__(root, hospitals=len(HOSPITALS), rows=ROWS)
        self.net = net
        self.net_folder = root.parent
        self.port, self.grpc_port = HTTPS_PORT, GRPC_PORT
        self.hub_url = f"https://{HUB_IP}:{HTTPS_PORT}"
        self._env = _clean_env()
        self.host_of = {"hub": "hub", **{node: host for host, node in NODE_OF.items()}}

    def prepare(self) -> None:
        # LocalConsortium's spec leaves hub.hostnames at its loopback default; the hub's
        # certificate must name the address the nodes dial, so it is set on the way in.
        def with_hub_address(spec: ConsortiumSpec, *args: Any, **kwargs: Any) -> None:
            spec.hub.hostnames = [HUB_IP]
            provision_spec(spec, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("confide.local._consortium.provision_spec", with_hub_address)
            super().prepare()
        for host, (listen, port, _, transports) in PROXIES.items():
            path = self.node_config_path(NODE_OF[host])
            config = yaml.safe_load(path.read_text())
            config.update({"transports": transports, "proxy": {"url": f"http://{listen}:{port}"}})
            path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.log_path(name).open("ab")
        self.processes[name] = subprocess.Popen(
            self.net.exec_args(self.host_of[name], sys.executable, "-m", "confide", *args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self.root,
        )
        log.close()


WAIT_FOR_HEALTH = """
import json, ssl, sys, time, urllib.request
url, ca, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
tls = ssl.create_default_context(cafile=ca)
no_proxy = urllib.request.ProxyHandler({})
opener = urllib.request.build_opener(no_proxy, urllib.request.HTTPSHandler(context=tls))
while True:
    try:
        with opener.open(url + "/health", timeout=1) as reply:
            print(json.dumps(reply.status)); break
    except OSError:
        if time.monotonic() > deadline:
            print(json.dumps(None)); break
        time.sleep(0.05)
"""

RING_SUM = """
import json, sys, time
from confide.client import Client
kit, collaboration = sys.argv[1], sys.argv[2]
nodes, deadline = set(sys.argv[3].split(",")), time.monotonic() + float(sys.argv[4])
with Client(kit) as client:
    while True:
        info = client._request("GET", f"/api/collaborations/{collaboration}")
        if nodes <= {n["id"] for n in info["nodes"] if n["online"]}:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"nodes online: {info['nodes']}")
        time.sleep(0.05)
    params = {"table": "patients", "column": "age", "decimals": 0}
    results = client.run(collaboration, "secure.ring_sum", params, timeout_s=30)
print(json.dumps([{"node": r.node, "ok": r.ok, "output": r.output, "error": r.error} for r in results]))
"""

REACH = """
import json, socket, sys
hub, proxy = sys.argv[1], sys.argv[4]
https_port, grpc_port, proxy_port = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
report = {"direct": {}, "connect": {}}
for port in (https_port, grpc_port):
    try:
        socket.create_connection((hub, port), timeout=3).close()
        report["direct"][port] = "connected"
    except OSError as exc:
        report["direct"][port] = str(exc)
    with socket.create_connection((proxy, proxy_port), timeout=3) as s:
        s.sendall(f"CONNECT {hub}:{port} HTTP/1.1\\r\\nHost: {hub}:{port}\\r\\n\\r\\n".encode())
        report["connect"][port] = s.recv(4096).split(b"\\r\\n", 1)[0].decode()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def consortium(network: tuple[Network, Path]) -> Iterator[NetnsConsortium]:
    """The consortium, hub up and healthy; nodes are started by the tests."""
    net, folder = network
    consortium = NetnsConsortium(folder / "consortium", net)
    try:
        consortium.prepare()
        consortium._spawn("hub", ["hub", "start", "--config", str(consortium.kits / "hub" / "hub.yaml")])
        ca = str(consortium.kits / "ca" / "ca.crt")
        status = net.python("hub", WAIT_FOR_HEALTH, consortium.hub_url, ca, "30", timeout=40)
        assert status == 200, f"the hub is not healthy; see {consortium.log_path('hub')}"
        yield consortium
    finally:
        consortium.close()


def _node_logs(consortium: NetnsConsortium) -> dict[str, str]:
    paths = {node: consortium.log_path(node) for node in consortium.node_ids}
    return {node: path.read_text(errors="replace") if path.exists() else "" for node, path in paths.items()}


def _wait_connected(consortium: NetnsConsortium, timeout_s: float = 30) -> None:
    """Return once every node's log says it connected to the hub."""
    deadline = time.monotonic() + timeout_s
    while True:
        logs = _node_logs(consortium)
        if all(CONNECTED in log for log in logs.values()):
            return
        for node in consortium.node_ids:
            consortium._check_alive(node)
        if time.monotonic() > deadline:
            waiting = [n for n, log in logs.items() if CONNECTED not in log]
            raise AssertionError(f"{', '.join(waiting)} did not connect within {timeout_s:.0f} s: {logs}")
        time.sleep(0.05)


def test_hospitals_reach_the_hub_only_through_their_proxy(consortium: NetnsConsortium) -> None:
    net = consortium.net
    for host, (proxy_ip, proxy_port, allowed, _) in PROXIES.items():
        report = net.python(host, REACH, HUB_IP, str(HTTPS_PORT), str(GRPC_PORT), proxy_ip, str(proxy_port))
        for port in (HTTPS_PORT, GRPC_PORT):
            assert "unreachable" in report["direct"][str(port)], (host, report)
            status = report["connect"][str(port)]
            if port in allowed:
                assert status.split()[1] == "200", (host, port, status)
            else:
                assert status.split()[1] == "403", (host, port, status)


def test_ring_sum_completes_while_one_hospital_falls_back_to_grpc(consortium: NetnsConsortium) -> None:
    started = time.monotonic()
    for node in consortium.node_ids:
        consortium.start_node(node)
    _wait_connected(consortium)
    results = consortium.net.python(
        "hub",
        RING_SUM,
        str(consortium.researcher_kit),
        COLLABORATION,
        ",".join(consortium.node_ids),
        "30",
        timeout=90,
    )
    logs = _node_logs(consortium)

    assert [r["ok"] for r in results] == [True, True, True], results
    initiator = next(r for r in results if r["output"]["role"] == "initiator")
    expected = sum(sum(patients(i, ROWS).column("age").to_pylist()) for i in range(len(HOSPITALS)))
    assert initiator["output"]["total"] == expected
    assert initiator["output"]["count"] == ROWS * len(HOSPITALS)

    # hospital 1: its proxy lets everything through, WebSocket at the first try
    a = logs[NODE_OF["h1"]]
    assert f"{CONNECTED} websocket" in a and "is unavailable" not in a
    # hospital 2: its proxy refuses CONNECT to the gRPC port; the node falls back to WebSocket
    b = logs[NODE_OF["h2"]]
    assert b.index("transport grpc is unavailable") < b.index(f"{CONNECTED} websocket")
    # hospital 3: its proxy refuses the hub's HTTPS port, so WebSocket and long-polling; gRPC it is
    c = logs[NODE_OF["h3"]]
    assert c.index("transport websocket is unavailable") < c.index("transport longpoll is unavailable")
    assert c.index("transport longpoll is unavailable") < c.index(f"{CONNECTED} grpc")
    assert f"{CONNECTED} websocket" not in c
    # and the proxies saw it all: tunnels to the hub, refusals where configured
    proxy_logs = {host: (consortium.net_folder / f"tinyproxy-{host}.log").read_text() for host in HOSPITALS}
    assert all(f'Established connection to host "{HUB_IP}"' in log for log in proxy_logs.values())
    assert f"Refused CONNECT method on port {GRPC_PORT}" in proxy_logs["h2"]
    assert f"Refused CONNECT method on port {HTTPS_PORT}" in proxy_logs["h3"]
    assert time.monotonic() - started < 60
