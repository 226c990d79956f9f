"""The node's configuration (``node.yaml``): its kit, its data sources and the hospital's policy.

Example::

    kit: ../kits/nodes/node-a
    data:
      - name: patients
        format: csv
        path: patients.csv
        columns: {age: int, sex: str, hippocampus_ml: float}
    policy:
      collaborations: [brain-study]
      researchers: [alice]
      algorithms: [stats.summary]
    workers: 1
    transports: [websocket, grpc, longpoll]   # tried in this order
    proxy: {url: "http://proxy.hospital.local:3128", username: u, password: p}
    os_trust_store: false     # true behind a proxy that re-signs TLS

Relative paths are resolved against the folder of ``node.yaml``. The policy allows only
what it lists; ``"*"`` allows everything in that list explicitly.
"""

from __future__ import annotations

import enum
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, model_validator

from confide.kit import load_model
from confide.transport import TransportKind

__all__ = ["ColumnType", "DataSourceConfig", "NodeConfig", "Policy", "load_node_config"]


class ColumnType(enum.StrEnum):
    """Declared column types."""

    INT = "int"
    FLOAT = "float"
    STR = "str"
    BOOL = "bool"


class SourceFormat(enum.StrEnum):
    """File formats a node reads."""

    CSV = "csv"
    PARQUET = "parquet"


class DataSourceConfig(BaseModel):
    """One named table offered to algorithms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    format: SourceFormat
    path: Path
    columns: dict[str, ColumnType] = Field(min_length=1)


class Policy(BaseModel):
    """What this hospital allows: collaborations, researchers and algorithms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collaborations: list[str] = Field(default_factory=list)
    researchers: list[str] = Field(default_factory=list)
    algorithms: list[str] = Field(default_factory=list)


class ProxyConfig(BaseModel):
    """An explicit outbound HTTP(S) proxy (otherwise ``HTTPS_PROXY`` / ``NO_PROXY`` apply)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://[^/@\s]+(:\d+)?/?$", description="http://proxy.hospital.local:3128")
    username: str | None = None
    password: str | None = None

    def url_with_credentials(self) -> str:
        """The proxy URL with Basic credentials embedded, as the transports take it."""
        if self.username is None:
            return self.url
        scheme, rest = self.url.split("://", 1)
        user = quote(self.username, safe="")
        password = quote(self.password or "", safe="")
        return f"{scheme}://{user}:{password}@{rest}"


class NodeConfig(BaseModel):
    """Everything a node needs to start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kit: Path
    hub_url: str | None = None
    data: list[DataSourceConfig] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)
    workers: int = Field(default=1, ge=1, le=64)
    heartbeat_s: float = Field(default=20.0, gt=0)
    input_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    transports: list[TransportKind] = Field(
        default_factory=lambda: [TransportKind.WEBSOCKET, TransportKind.GRPC, TransportKind.LONGPOLL],
        min_length=1,
    )
    proxy: ProxyConfig | None = None
    os_trust_store: bool = False
    grpc_target: str | None = Field(default=None, pattern=r"^[^\s:/]+:\d+$")

    @model_validator(mode="after")
    def _unique_tables(self) -> NodeConfig:
        names = [d.name for d in self.data]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"data source names must be unique; repeated: {', '.join(dupes)}")
        return self

    def resolved(self, base: Path) -> NodeConfig:
        """Resolve relative paths against ``base``."""

        def fix(p: Path) -> Path:
            return p if p.is_absolute() else (base / p).resolve()

        return self.model_copy(
            update={
                "kit": fix(self.kit),
                "data": [d.model_copy(update={"path": fix(d.path)}) for d in self.data],
            }
        )


def load_node_config(path: Path) -> NodeConfig:
    """Read ``node.yaml``; :class:`ConfigError` names the file and the field on error."""
    return load_model(path, NodeConfig, "node config").resolved(path.parent.resolve())
