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
      min_count: 10               # refuse statistics over fewer than 10 of this node's rows
      privacy_budget:             # total (epsilon, delta) per researcher and dataset
        epsilon: 3.0
        delta: 1.0e-5
        overrides:                # the first match wins; "*" matches any name
          - {researcher: alice, dataset: patients, epsilon: 5.0, delta: 1.0e-5}
          - {researcher: "*", dataset: imaging, epsilon: 1.0, delta: 1.0e-6}
      ledger: privacy-ledger.sqlite   # default: <kit dir>/privacy-ledger.sqlite
    workers: 1
    transports: [websocket, grpc, longpoll]   # tried in this order
    proxy: {url: "http://proxy.hospital.local:3128", username: u, password: p}
    os_trust_store: false     # true behind a proxy that re-signs TLS

Relative paths are resolved against the folder of ``node.yaml``. The policy allows only
what it lists; ``"*"`` allows everything in that list explicitly. Without a
``privacy_budget`` the node still runs tasks that ask for no differential privacy, and
refuses those that do.
"""

from __future__ import annotations

import enum
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, model_validator

from confide.kit import load_model
from confide.transport import TransportKind

__all__ = [
    "BudgetOverride",
    "ColumnType",
    "DataSourceConfig",
    "EpsilonDelta",
    "NodeConfig",
    "Policy",
    "PrivacyBudget",
    "load_node_config",
]


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


class EpsilonDelta(BaseModel):
    """An (epsilon, delta) pair of differential privacy: a budget, or what a task spends of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(gt=0, allow_inf_nan=False, description="a positive finite number, e.g. 1.0")
    delta: float = Field(gt=0, lt=1, description="strictly between 0 and 1, e.g. 1.0e-5")


class BudgetOverride(EpsilonDelta):
    """A budget for one researcher and dataset (either may be ``"*"``) instead of the default."""

    researcher: str = Field(min_length=1, description='a researcher id, or "*" for any')
    dataset: str = Field(min_length=1, description='a data source name, or "*" for any')


class PrivacyBudget(EpsilonDelta):
    """The total privacy a researcher may spend on one dataset of this node.

    ``epsilon`` and ``delta`` are the default for every (researcher, dataset) pair; the
    first entry of ``overrides`` that matches a pair replaces them for that pair. Each pair
    has its own budget: spending on one dataset leaves the others untouched.
    """

    overrides: list[BudgetOverride] = Field(default_factory=list)

    def for_pair(self, researcher: str, dataset: str) -> EpsilonDelta:
        """The budget of ``researcher`` on ``dataset``: the first matching override, else the default."""
        for override in self.overrides:
            if override.researcher in ("*", researcher) and override.dataset in ("*", dataset):
                return EpsilonDelta(epsilon=override.epsilon, delta=override.delta)
        return EpsilonDelta(epsilon=self.epsilon, delta=self.delta)


class Policy(BaseModel):
    """What this hospital allows: collaborations, researchers, algorithms, and how much they may learn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collaborations: list[str] = Field(default_factory=list)
    researchers: list[str] = Field(default_factory=list)
    algorithms: list[str] = Field(default_factory=list)
    min_count: int = Field(
        default=5,
        ge=1,
        description="the node refuses to contribute to a statistic over fewer of its own rows than this",
    )
    privacy_budget: PrivacyBudget | None = Field(
        default=None,
        description=(
            "the (epsilon, delta) each researcher may spend per dataset; without one, tasks that ask "
            "for differential privacy are refused and all others are allowed"
        ),
    )
    ledger: Path | None = Field(
        default=None,
        description=(
            "the SQLite file recording the privacy spent so far; default <kit dir>/privacy-ledger.sqlite. "
            "Deleting it forgets everything spent."
        ),
    )

    def budget_for(self, researcher: str, dataset: str) -> EpsilonDelta | None:
        """The privacy budget of ``researcher`` on ``dataset``, or ``None`` if the policy sets none.

        ``None`` means differentially private tasks must be refused ("this node has no
        privacy_budget in its policy; add one to node.yaml to allow differentially private
        tasks"); :meth:`confide.node._ledger.PrivacyLedger.charge` does so when given ``None``.
        """
        return None if self.privacy_budget is None else self.privacy_budget.for_pair(researcher, dataset)


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

        ledger = self.policy.ledger
        policy = self.policy.model_copy(update={"ledger": fix(ledger)}) if ledger is not None else self.policy
        return self.model_copy(
            update={
                "kit": fix(self.kit),
                "data": [d.model_copy(update={"path": fix(d.path)}) for d in self.data],
                "policy": policy,
            }
        )


def load_node_config(path: Path) -> NodeConfig:
    """Read ``node.yaml``; :class:`ConfigError` names the file and the field on error."""
    return load_model(path, NodeConfig, "node config").resolved(path.parent.resolve())
