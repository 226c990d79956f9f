"""The node agent: one hospital's node, composed of its hub link, run executor, workers and budget.

- :class:`~confide.node._link.HubLink` dials out to the hub, keeps the link alive and
  delivers frames reliably;
- :class:`~confide.node._runs.RunExecutor` opens each run, checks the policy, runs the
  algorithm and seals its outcome to the researcher;
- :class:`~confide.node._worker.WorkerPool` runs algorithm steps in worker processes;
- :class:`~confide.node._budget.PrivacyBudget` charges every differentially private release.

The agent routes the frames the link hands it to the executor.
"""

from __future__ import annotations

import asyncio
import logging

from confide.kit import Kit
from confide.node._budget import PrivacyBudget
from confide.node._config import NodeConfig
from confide.node._link import HubLink
from confide.node._releases import row_key_secret
from confide.node._runs import RunExecutor
from confide.node._worker import WorkerPool, learning_installed
from confide.transport import Connector
from confide.wire import Envelope, MessageKind, RunAssignment, decode_control

__all__ = ["Agent"]

log = logging.getLogger("confide.node")


class Agent:
    """One hospital's node: ``await Agent(config, kit, connector).run()``."""

    def __init__(
        self, config: NodeConfig, kit: Kit, connector: Connector, workers: WorkerPool | None = None
    ) -> None:
        self.config = config
        self.kit = kit
        self.connector = connector
        self.workers = workers or WorkerPool(
            config.data,
            config.workers,
            config.training_data,
            node_id=kit.party_id,
            policy=config.policy,
            row_secret=row_key_secret(kit.identity),
        )
        self.budget = PrivacyBudget(config.policy, kit.directory)
        self.link = HubLink(
            kit, connector, self, heartbeat_s=config.heartbeat_s, hub_url=config.hub_url or kit.hub_url
        )
        self.runs = RunExecutor(config, kit, self.link, self.workers, self.budget)
        self._preparing: asyncio.Task[None] | None = None

    @property
    def node_id(self) -> str:
        """This node's party id."""
        return self.kit.party_id

    @property
    def connected(self) -> asyncio.Event:
        """Set while the hub link is up."""
        return self.link.connected

    async def run(self) -> None:
        """Stay connected to the hub until cancelled; :class:`AuthError` if credentials are refused."""
        await self.workers.warm_up()
        if self.config.training_data and learning_installed():
            # The accountant needs Opacus (and so torch): import it off the event loop now,
            # not seconds into the first training round.
            self._preparing = asyncio.create_task(asyncio.to_thread(self.budget.prepare))
        try:
            await self.link.run()
        finally:
            self.runs.cancel()
            if self._preparing is not None:
                self._preparing.cancel()

    async def close(self) -> None:
        """Stop work in progress, the worker processes and the budget's files."""
        self.runs.cancel()
        self.workers.close()
        self.budget.close()

    async def on_frame(self, envelope: Envelope) -> None:
        """Route a frame from the hub (a :class:`~confide.node._link.FrameHandler`)."""
        if envelope.kind is MessageKind.RUN:
            assignment, attachment = decode_control(envelope, RunAssignment)
            self.runs.start(assignment, attachment)
        elif envelope.kind in (MessageKind.PEER, MessageKind.PEER_CHUNK):
            self.runs.on_peer(envelope)
        elif envelope.kind is MessageKind.AGGREGATION:
            self.runs.on_aggregation(envelope)
        else:
            log.warning("ignoring unexpected %s frame from the hub", envelope.kind.name)
