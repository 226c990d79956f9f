"""Trying transports in order: the node uses the first that reaches the hub, and says which.

A hospital's firewall or proxy may block one transport (a proxy that refuses WebSocket
upgrades, a port gRPC cannot reach) and let another through. The connector that last
worked is tried first next time, so a node that found its way does not pay for the
blocked ones on every reconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confide._errors import TransportError
from confide.transport._base import Connection, Connector

__all__ = ["FallbackConnector"]

log = logging.getLogger("confide.transport")


class FallbackConnector:
    """A connector over several transports in order of preference."""

    def __init__(self, connectors: Sequence[Connector]) -> None:
        if not connectors:
            raise TransportError("no transport is configured; list at least one in 'transports'")
        self._connectors = list(connectors)
        self._last: Connector | None = None

    @property
    def name(self) -> str:
        """The transport in use (or the first to be tried)."""
        return (self._last or self._connectors[0]).name

    async def connect(self) -> Connection:
        order = (
            self._connectors
            if self._last is None
            else [self._last, *(c for c in self._connectors if c is not self._last)]
        )
        problems = []
        for connector in order:
            try:
                conn = await connector.connect()
            except TransportError as exc:
                problems.append(f"{connector.name}: {exc}")
                log.warning("transport %s is unavailable (%s); trying the next one", connector.name, exc)
                continue
            if connector is not self._last:
                log.info("connected to the hub over %s", connector.name)
            self._last = connector
            return conn
        raise TransportError("no transport reached the hub: " + "; ".join(problems))
