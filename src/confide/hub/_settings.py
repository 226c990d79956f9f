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
    max_wait_s : the longest a researcher's long-poll is held.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    database_url: str = "sqlite:///hub.db"
    seed_file: Path | None = None
    heartbeat_s: float = Field(default=20.0, gt=0)
    max_wait_s: float = Field(default=25.0, gt=0, le=300)
    mailbox_ttl_s: float = Field(default=7 * 24 * 3600, gt=0)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"

    def resolved(self, base: Path) -> HubSettings:
        """Resolve relative file paths and SQLite URLs against ``base``."""
        update: dict[str, object] = {}
        if self.seed_file is not None and not self.seed_file.is_absolute():
            update["seed_file"] = (base / self.seed_file).resolve()
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and not self.database_url.startswith(prefix + "/"):
            rel = self.database_url[len(prefix) :]
            if rel and rel != ":memory:":
                update["database_url"] = prefix + str((base / rel).resolve())
        return self.model_copy(update=update)


def load_hub_settings(path: Path) -> HubSettings:
    """Read ``hub.yaml``; :class:`ConfigError` names the file and the field on error."""
    return load_model(path, HubSettings, "hub config").resolved(path.parent.resolve())
