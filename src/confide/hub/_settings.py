"""Hub settings: one frozen model, read from ``hub.yaml`` with paths relative to that file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from confide.kit import load_model

__all__ = ["HubSettings", "load_hub_settings"]


class HubSettings(BaseModel):
    """Everything ``create_app`` and ``confide hub start`` need.

    Parameters
    ----------
    host, port : where to listen.
    database_url : ``sqlite:///hub.db`` (default, relative to the config file) or a
        ``postgresql://`` URL.
    seed_file : the ``seed.json`` written by ``confide provision``; imported at start.
    heartbeat_s : how often nodes are asked to show they are alive.
    max_wait_s : the longest a researcher's or node's long-poll is held.
    tls_cert, tls_key : the hub's TLS certificate and key (PEM; ``provision`` writes them).
    insecure : serve plain HTTP (local development only; ``--insecure``).
    grpc_port : where the gRPC transport listens (``None``: not served).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    database_url: str = "sqlite:///hub.db"
    seed_file: Path | None = None
    heartbeat_s: float = Field(default=20.0, gt=0)
    max_wait_s: float = Field(default=25.0, gt=0, le=300)
    mailbox_ttl_s: float = Field(default=7 * 24 * 3600, gt=0)
    aggregation_stage_timeout_s: float = Field(
        default=120.0, gt=0, description="how long a secure-aggregation stage waits for a silent node"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    grpc_port: int | None = Field(default=None, ge=0, le=65535)

    @property
    def tls(self) -> bool:
        """Whether the hub serves TLS."""
        return not self.insecure and self.tls_cert is not None and self.tls_key is not None

    def resolved(self, base: Path) -> HubSettings:
        """Resolve relative file paths and SQLite URLs against ``base``."""
        update: dict[str, object] = {}
        for name in ("seed_file", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not path.is_absolute():
                update[name] = (base / path).resolve()
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and not self.database_url.startswith(prefix + "/"):
            rel = self.database_url[len(prefix) :]
            if rel and rel != ":memory:":
                update["database_url"] = prefix + str((base / rel).resolve())
        return self.model_copy(update=update)


def load_hub_settings(path: Path) -> HubSettings:
    """Read ``hub.yaml``; :class:`ConfigError` names the file and the field on error."""
    return load_model(path, HubSettings, "hub config").resolved(path.parent.resolve())
