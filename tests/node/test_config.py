"""The node config's transport, proxy and TLS settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from confide._errors import ConfigError
from confide.node import load_node_config
from confide.node._config import ProxyConfig
from confide.transport import TransportKind


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


def test_transports_default_to_websocket_then_grpc_then_longpoll(tmp_path: Path) -> None:
    config = load_node_config(_write(tmp_path, "kit: k\n"))

    assert config.transports == [TransportKind.WEBSOCKET, TransportKind.GRPC, TransportKind.LONGPOLL]
    assert config.proxy is None and not config.os_trust_store


def test_unknown_transport_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="transports"):
        load_node_config(_write(tmp_path, "kit: k\ntransports: [websocket, carrier-pigeon]\n"))


def test_proxy_credentials_are_quoted_into_the_url() -> None:
    proxy = ProxyConfig(url="http://proxy.hospital.local:3128", username="dr who", password="p@ss:word")

    assert proxy.url_with_credentials() == "http://dr%20who:p%40ss%3Aword@proxy.hospital.local:3128"
    assert ProxyConfig(url="http://proxy:3128").url_with_credentials() == "http://proxy:3128"


@pytest.mark.parametrize("url", ["proxy:3128", "socks5://proxy:1080", "http://user:pw@proxy:3128"])
def test_malformed_proxy_urls_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"proxy\.url"):
        load_node_config(_write(tmp_path, f"kit: k\nproxy: {{url: '{url}'}}\n"))
