"""Building the node's way out to the hub: the configured transports, in order, with TLS and proxy.

TLS trusts the consortium CA from the kit (which issued the hub's certificate) plus the
usual public roots, or the operating system's trust store when ``os_trust_store`` is set
(for proxies that inspect TLS). Party identity never depends on TLS: every message is
sealed and signed end to end, so a TLS-inspecting proxy can read routing metadata but
can neither read nor forge a task or a result.
"""

from __future__ import annotations

from urllib.parse import urlparse

from confide.kit import Kit
from confide.node._config import NodeConfig
from confide.transport import Connector, FallbackConnector, TransportKind, WebSocketConnector

__all__ = ["hub_connector"]


def hub_connector(config: NodeConfig, kit: Kit) -> FallbackConnector:
    """The node's connector: each configured transport, tried in order."""
    hub_url = config.hub_url or kit.hub_url
    secure = urlparse(hub_url).scheme == "https"
    tls = kit.tls_context(os_trust_store=config.os_trust_store) if secure else None
    proxy = config.proxy.url_with_credentials() if config.proxy else None
    connectors: list[Connector] = []
    for kind in config.transports:
        if kind is TransportKind.WEBSOCKET:
            connectors.append(WebSocketConnector(hub_url, tls, proxy_url=proxy))
        elif kind is TransportKind.GRPC:
            target = config.grpc_target or kit.hub_grpc
            if target is not None:
                from confide.transport import GrpcConnector  # loads grpc only for a node that uses it

                root = kit.ca_pem if secure else None
                connectors.append(GrpcConnector(target, root_certificates=root, proxy_url=proxy))
        else:
            from confide.transport import LongPollConnector  # loads httpx only for a node that uses it

            connectors.append(LongPollConnector(hub_url, ssl_context=tls, proxy_url=proxy))
    return FallbackConnector(connectors)
