"""The node's configuration (``node.yaml``): its kit, its data sources and the hospital's policy.

Example::

    kit: ../kits/nodes/node-a
    data:
      - name: patients
        format: csv                 # or parquet: a file, read by DuckDB or Arrow
        path: patients.csv
        columns: {age: int, sex: str, hippocampus_ml: float}
      - name: visits
        format: sql                 # a table in the hospital's database (any SQLAlchemy URL)
        url_env: HOSPITAL_DB_URL    # or url: "postgresql+psycopg://confide@db.hospital.local/research"
        table: research.visits      # schema-qualified or not
        columns: {patient_id: str, visit_age: int, systolic_bp: float}
    policy:
      collaborations: [brain-study]
      researchers: [alice]
      algorithms: [stats.summary]
      min_count: 10               # refuse statistics over fewer than 10 of this node's rows
      privacy_budget:             # total (epsilon, delta) per researcher and dataset; with one,
                                  # every release must be differentially private (require_dp)
        epsilon: 3.0
        delta: 1.0e-5
        overrides:                # the first match wins; "*" matches any name
          - {researcher: alice, dataset: patients, epsilon: 5.0, delta: 1.0e-5}
          - {researcher: "*", dataset: imaging, epsilon: 1.0, delta: 1.0e-6}
      ledger: privacy-ledger.sqlite   # default: <kit dir>/privacy-ledger.sqlite
      require_dp: true            # default: true exactly when privacy_budget is set
      tables:                     # per table, over the node-wide settings
        visits: {require_dp: false, allow_extremes: true}
    training_data:                  # for federated learning (fl.train, fl.evaluate)
      - name: fashion
        format: idx                 # idx (MNIST layout, gzip or not), csv, parquet, mnist-5k
        images: train-images-idx3-ubyte.gz
        labels: train-labels-idx1-ubyte.gz
        normalise: fashion-mnist    # or mnist, none, or [mean, std]
        test_fraction: 0.1          # a held-out split for federated evaluation
    workers: 1
    transports: [websocket, grpc, longpoll]   # tried in this order
    proxy: {url: "http://proxy.hospital.local:3128", username: u, password: p}
    os_trust_store: false     # true behind a proxy that re-signs TLS

Relative paths (and a relative SQLite file in ``url``) are resolved against the folder of
``node.yaml``. A ``sql`` source reads only its declared columns; its credentials can stay
out of the file in the environment variable that ``url_env`` names. The policy allows only
what it lists; ``"*"`` allows everything in that list explicitly. Without a
``privacy_budget`` the node still runs tasks that ask for no differential privacy, and
refuses those that do. With one, ``require_dp`` is on unless the policy turns it off: a
release from a table that requires differential privacy must carry distributed noise on
every secure round and be charged to that table's budget, and per-node results that cannot
(``stats.summary``) are refused. ``policy.tables`` overrides ``require_dp`` per table and
may let ``stats.summary`` release a table's per-node minimum and maximum (``allow_extremes``),
which are single patients' values and withheld otherwise.
"""

from __future__ import annotations

import enum
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from confide.kit import load_model
from confide.node._policy import (
    TABLE_NAME,
    BudgetOverride,
    EffectiveTablePolicy,
    EpsilonDelta,
    Policy,
    PrivacyBudget,
    TablePolicy,
)
from confide.query import ColumnType  # the one vocabulary of column types, shared with the query compiler
from confide.transport import TransportKind

__all__ = [
    "BudgetOverride",
    "ColumnType",
    "DataSourceConfig",
    "EffectiveTablePolicy",
    "EpsilonDelta",
    "NodeConfig",
    "Policy",
    "PrivacyBudget",
    "SourceFormat",
    "TablePolicy",
    "TrainingDataConfig",
    "TrainingFormat",
    "load_node_config",
]


class SourceFormat(enum.StrEnum):
    """Where a node's table lives: a file format, or ``sql`` for a table in a database."""

    CSV = "csv"
    PARQUET = "parquet"
    SQL = "sql"


_SQL_FIELDS = ("url", "url_env", "table")


class DataSourceConfig(BaseModel):
    """One named table offered to algorithms: a CSV or Parquet file, or a table in a database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=TABLE_NAME)
    format: SourceFormat
    path: Path | None = Field(default=None, description="csv and parquet: the file")
    url: SecretStr | None = Field(
        default=None,
        description="sql: a SQLAlchemy URL, e.g. postgresql+psycopg://user:password@host:5432/database",
    )
    url_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="sql: the environment variable that holds the URL, so no password sits in node.yaml",
    )
    table: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$",
        description="sql: the table in the database, as table or schema.table",
    )
    columns: dict[str, ColumnType] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _parses_as_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            try:
                make_url(url.get_secret_value())
            except ArgumentError:
                # The message must not echo the URL: it may hold a password.
                raise ValueError(
                    "not a SQLAlchemy URL; write dialect+driver://user:password@host:port/database, "
                    "e.g. postgresql+psycopg://confide@db.hospital.local/research"
                ) from None
        return url

    @model_validator(mode="after")
    def _fields_match_format(self) -> DataSourceConfig:
        if self.format is SourceFormat.SQL:
            if self.path is not None:
                raise ValueError(
                    "path is for csv and parquet files; a sql source names its database with url "
                    "(or url_env) and its table with table"
                )
            if (self.url is None) == (self.url_env is None):
                raise ValueError(
                    "format sql needs exactly one of url (a SQLAlchemy URL) and url_env (the "
                    "environment variable that holds one)"
                )
            if self.table is None:
                raise ValueError("format sql needs table: the table in the database (table or schema.table)")
            return self
        given = [field for field in _SQL_FIELDS if getattr(self, field) is not None]
        if given:
            raise ValueError(
                f"{given[0]} is only for format sql; a {self.format.value} source reads the file at path"
            )
        if self.path is None:
            raise ValueError(f"format {self.format.value} needs path: the {self.format.value} file")
        return self

    def resolved(self, base: Path) -> DataSourceConfig:
        """This source with a relative ``path`` or SQLite file in ``url`` resolved against ``base``."""
        if self.path is not None and not self.path.is_absolute():
            return self.model_copy(update={"path": (base / self.path).resolve()})
        if self.url is not None:
            url = make_url(self.url.get_secret_value())
            database = url.database
            relative = database not in (None, "", ":memory:") and not Path(str(database)).is_absolute()
            if url.get_backend_name() == "sqlite" and relative and not str(database).startswith("file:"):
                resolved = url.set(database=str((base / str(database)).resolve()))
                return self.model_copy(
                    update={"url": SecretStr(resolved.render_as_string(hide_password=False))}
                )
        return self


class TrainingFormat(enum.StrEnum):
    """How a training data set is stored."""

    IDX = "idx"
    CSV = "csv"
    PARQUET = "parquet"
    MNIST_5K = "mnist-5k"


class Partition(BaseModel):
    """Train on one part of the data set only: for simulations where nodes share one file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parts: int = Field(ge=1, le=1000)
    index: int = Field(ge=0)
    alpha: float | None = Field(default=None, gt=0, description="Dirichlet alpha (non-IID); none: IID")
    seed: int = 0

    @model_validator(mode="after")
    def _index(self) -> Partition:
        if self.index >= self.parts:
            raise ValueError(f"index {self.index} must be below parts {self.parts}")
        return self


_TRAINING_FIELDS = {
    TrainingFormat.IDX: ("images", "labels"),
    TrainingFormat.CSV: ("path", "label"),
    TrainingFormat.PARQUET: ("path", "label"),
    TrainingFormat.MNIST_5K: (),
}


class TrainingDataConfig(BaseModel):
    """A labelled data set the node trains on: IDX images, a CSV or Parquet table, or the MNIST 5k sample.

    The node keeps ``test_fraction`` of it aside (always the same samples, by ``split_seed``)
    for federated evaluation, and trains on the rest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
    format: TrainingFormat
    images: Path | None = Field(default=None, description="idx: the images file")
    labels: Path | None = Field(default=None, description="idx: the labels file")
    path: Path | None = Field(default=None, description="csv and parquet: the file")
    label: str | None = Field(default=None, description="csv and parquet: the label column")
    features: list[str] | None = Field(default=None, description="csv and parquet: default all but label")
    classes: list[str] | None = Field(
        default=None,
        description=(
            "class names in label order: idx default 0..9; required for csv and parquet, so that every "
            "node numbers the classes alike whichever of them its own file holds"
        ),
    )
    normalise: str | tuple[float, float] = Field(
        default="none", description="mnist, fashion-mnist, none, or [mean, std]"
    )
    test_fraction: float = Field(default=0.1, ge=0, lt=1)
    split_seed: int = 0
    limit: int | None = Field(
        default=None, ge=1, description="use only this many samples, drawn at random by split_seed"
    )
    partition: Partition | None = None

    @field_validator("normalise")
    @classmethod
    def _known(cls, value: str | tuple[float, float]) -> str | tuple[float, float]:
        if isinstance(value, str) and value not in ("mnist", "fashion-mnist", "none"):
            raise ValueError(f"normalise must be mnist, fashion-mnist, none or [mean, std], not {value!r}")
        if not isinstance(value, str) and not value[1] > 0:
            raise ValueError("normalise [mean, std] needs a positive std")
        return value

    @model_validator(mode="after")
    def _fields_of_format(self) -> TrainingDataConfig:
        needed = _TRAINING_FIELDS[self.format]
        missing = [f for f in needed if getattr(self, f) is None]
        if self.format in (TrainingFormat.CSV, TrainingFormat.PARQUET) and not self.classes:
            missing.append("classes (every label value, in the order all nodes share)")
        if missing:
            raise ValueError(f"format {self.format.value} needs {' and '.join(missing)}")
        extra = [
            f
            for f in ("images", "labels", "path", "label", "features")
            if f not in needed and getattr(self, f)
        ]
        if extra and not (extra == ["features"] and "label" in needed):
            raise ValueError(f"{extra[0]} is not used by format {self.format.value}")
        return self

    def resolved(self, base: Path) -> TrainingDataConfig:
        """This data set with relative file paths resolved against ``base``."""
        update = {
            f: (base / getattr(self, f)).resolve()
            for f in ("images", "labels", "path")
            if getattr(self, f) is not None and not getattr(self, f).is_absolute()
        }
        return self.model_copy(update=update)


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
    training_data: list[TrainingDataConfig] = Field(default_factory=list)
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
        for what, names in (
            ("data source", [d.name for d in self.data]),
            ("training data", [d.name for d in self.training_data]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _policy_names_tables(self) -> NodeConfig:
        # A misspelt table would silently fall back to the node-wide policy.
        declared = {d.name for d in self.data}
        unknown = sorted(set(self.policy.tables) - declared)
        if unknown:
            raise ValueError(
                f"policy.tables names {', '.join(map(repr, unknown))}, which is no data source of this "
                f"node; name one of: {', '.join(sorted(declared)) or '(none declared under data)'}"
            )
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
                "data": [d.resolved(base) for d in self.data],
                "training_data": [d.resolved(base) for d in self.training_data],
                "policy": policy,
            }
        )


def load_node_config(path: Path) -> NodeConfig:
    """Read ``node.yaml``; :class:`ConfigError` names the file and the field on error."""
    return load_model(path, NodeConfig, "node config").resolved(path.parent.resolve())
