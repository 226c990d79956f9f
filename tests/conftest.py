"""Shared fixtures: a consortium with a real hub (uvicorn on a loopback port) and real node agents.

In-process consortia speak plain HTTP by default: with TLS, a hub, agents and clients in
one process on several threads crashed CPython 3.11's garbage collector now and then
(a segfault inside ``_ssl`` finalisation; never seen with separate processes). TLS is
tested end to end with separate processes (``tests/cli``), as it is deployed.

The hub and the agents run in one background event loop in this process, so tests stay
fast; every byte still crosses real sockets (HTTP for the researcher, WebSocket for nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from confide.client import Client
from confide.hub import create_app, load_hub_settings
from confide.kit import Kit
from confide.local import COLLABORATION, LocalConsortium, TableWriter
from confide.node import Agent, WorkerPool, load_node_config
from confide.transport import WebSocketConnector

T = TypeVar("T")


class BackgroundLoop:
    """An event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class InProcessConsortium:
    """A provisioned consortium whose hub and agents run in a background loop."""

    def __init__(
        self,
        root: Path,
        hospitals: int = 3,
        rows: int = 200,
        hub_port: int = 0,
        tls: bool = False,
        tables: TableWriter | None = None,
        training: TableWriter | None = None,
        policy: dict[str, Any] | None = None,
    ) -> None:
        self.local = LocalConsortium(
            root, hospitals=hospitals, rows=rows, tls=tls, tables=tables, training=training, policy=policy
        )
        self.local.prepare()
        self.hub_port = hub_port or self.local.port
        self.bg = BackgroundLoop()
        self.server: uvicorn.Server | None = None
        self.agents: dict[str, Agent] = {}
        self.agent_tasks: dict[str, Future[None]] = {}
        self.pools: dict[str, WorkerPool] = {}
        self.hub_settings = load_hub_settings(self.local.kits / "hub" / "hub.yaml")

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx call to this hub should verify against."""
        return self.local.tls_context() if self.local.tls else True

    @property
    def node_ids(self) -> list[str]:
        return self.local.node_ids

    @property
    def researcher_kit(self) -> Path:
        return self.local.researcher_kit

    def client(self, researcher: str = "alice") -> Client:
        return Client(self.local.kits / "researchers" / researcher, timeout_s=30)

    @property
    def app_state(self) -> Any:
        return self.app.state

    def start_hub(self) -> None:
        self.app = app = create_app(self.hub_settings)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.hub_port,
            log_level="warning",
            ws="websockets-sansio",
            lifespan="on",
            ssl_certfile=str(self.hub_settings.tls_cert) if self.hub_settings.tls else None,
            ssl_keyfile=str(self.hub_settings.tls_key) if self.hub_settings.tls else None,
        )
        self.server = uvicorn.Server(config)
        self.serving = self.bg.submit(self.server.serve())
        for _ in range(1000):
            if self.server.started:
                return
            if self.serving.done():
                self.serving.result()
            threading.Event().wait(0.01)
        raise RuntimeError("hub did not start within 10 s")

    def stop_hub(self) -> None:
        if self.server is not None:
            self.bg.call(self.app.state.longpoll.close())  # answer held long-polls now
            self.server.should_exit = True
            self.serving.result(15)
            self.server = None

    def start_node(
        self, node_id: str, workers: WorkerPool | None = None, hub_url: str | None = None
    ) -> Agent:
        config = load_node_config(self.local.node_config_path(node_id))
        kit = Kit.load(config.kit)
        pool = (
            workers
            or self.pools.get(node_id)
            or WorkerPool(config.data, 1, config.training_data, node_id=node_id, policy=config.policy)
        )
        if workers is None:
            self.pools[node_id] = pool
        url = hub_url or kit.hub_url
        tls = kit.tls_context() if url.startswith("https://") else None
        agent = Agent(config, kit, WebSocketConnector(url, tls), pool)
        self.agents[node_id] = agent
        self.agent_tasks[node_id] = self.bg.submit(agent.run())
        return agent

    def stop_node(self, node_id: str) -> None:
        future = self.agent_tasks.pop(node_id, None)
        if future is not None:
            future.cancel()
            with contextlib.suppress(BaseException):
                future.result(5)
        self.agents.pop(node_id, None)

    def wait_online(
        self, node_ids: list[str] | None = None, online: bool = True, timeout_s: float = 30
    ) -> None:
        wanted = set(node_ids or self.node_ids)
        with self.client() as client:
            for _ in range(int(timeout_s / 0.02)):
                info = client._request("GET", f"/api/collaborations/{COLLABORATION}")
                now = {n["id"] for n in info["nodes"] if n["online"]}
                if (wanted <= now) if online else not (wanted & now):
                    return
                threading.Event().wait(0.02)
        raise TimeoutError(f"nodes {wanted} did not become {'online' if online else 'offline'}")

    def start(self) -> InProcessConsortium:
        self.start_hub()
        for node_id in self.node_ids:
            self.start_node(node_id)
        self.wait_online()
        return self

    def close(self) -> None:
        for node_id in list(self.agent_tasks):
            self.stop_node(node_id)
        self.stop_hub()
        for pool in self.pools.values():
            pool.close()
        self.bg.close()


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[InProcessConsortium]:
    c = InProcessConsortium(tmp_path / "consortium")
    try:
        yield c.start()
    finally:
        c.close()


SUMMARY_PARAMS = {"table": "patients", "columns": ["age", "hippocampus_ml"]}
__all__ = ["COLLABORATION", "SUMMARY_PARAMS", "BackgroundLoop", "InProcessConsortium"]
