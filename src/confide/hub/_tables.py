"""The hub's SQL schema: SQLAlchemy Core tables on one ``MetaData``, and the migration to it.

``SqlStore`` (``_sqlstore.py``) reads and writes these tables; the Alembic migrations in
``migrations/versions`` create them, ``upgrade_to_head`` applies those migrations, and a
test checks that the migrated schema and this metadata agree. Change a table here only
together with a new migration.

Conventions: ids are strings chosen by the provisioning tool or the hub, times are
integer milliseconds since the epoch, sealed payloads are opaque envelope bytes, and a
run's status is a ``RunStatus`` value.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    URL,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    text,
)
from sqlalchemy.pool import NullPool

__all__ = [
    "MIGRATIONS_DIR",
    "aggregates",
    "audit_events",
    "collaboration_members",
    "collaborations",
    "mailbox",
    "metadata",
    "nodes",
    "organisations",
    "researchers",
    "results",
    "runs",
    "tasks",
    "upgrade_to_head",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any fixed key: hub processes starting together on PostgreSQL migrate one at a time.
_MIGRATION_LOCK = 0x636F6E66

# Explicit constraint names, so migrations can drop or alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# No lengths: PostgreSQL and SQLite treat VARCHAR alike, and ids never get cut short.
ID = String()
STATUS = String(16)
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
AUTO_ID = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(naming_convention=NAMING_CONVENTION)

organisations = Table(
    "organisations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", Text, nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("organisation_id", ID, ForeignKey("organisations.id"), nullable=False),
    Column("token_hash", String(), nullable=False, unique=True),
    Column("certificate_pem", LargeBinary, nullable=False),
)

researchers = Table(
    "researchers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("organisation_id", ID, ForeignKey("organisations.id"), nullable=False),
    Column("token_hash", String(), nullable=False, unique=True),
    Column("certificate_pem", LargeBinary, nullable=False),
)

collaborations = Table(
    "collaborations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", Text, nullable=False),
)

# ``party_id`` names a node or a researcher, as ``role`` says; the store checks that the
# party exists, since one foreign key cannot point at two tables.
collaboration_members = Table(
    "collaboration_members",
    metadata,
    Column(
        "collaboration_id",
        ID,
        ForeignKey("collaborations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("role", String(16), primary_key=True),
    Column("party_id", ID, primary_key=True),
    Index(None, "party_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", ID, primary_key=True),
    Column("collaboration_id", ID, ForeignKey("collaborations.id"), nullable=False),
    Column("researcher_id", ID, ForeignKey("researchers.id"), nullable=False),
    Column("algorithm", String(), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "collaboration_id", "created_ms"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("task_id", ID, ForeignKey("tasks.id"), nullable=False),
    Column("node_id", ID, ForeignKey("nodes.id"), nullable=False),
    Column("status", STATUS, nullable=False),
    Column("input_envelope", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index(None, "task_id"),
    Index(None, "node_id", "status"),
)

results = Table(
    "results",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("task_id", ID, ForeignKey("tasks.id"), nullable=False),
    Column("node_id", ID, ForeignKey("nodes.id"), nullable=False),
    Column("status", STATUS, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index(None, "task_id"),
)

# Relayed envelopes; ``task_id`` is not a foreign key because session traffic (e.g. a
# secure-aggregation round) may name a session the task table does not hold.
mailbox = Table(
    "mailbox",
    metadata,
    Column("id", ID, primary_key=True),
    Column("recipient", ID, nullable=False),
    Column("sender", ID, nullable=False),
    Column("task_id", ID, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index(None, "recipient", "created_ms"),
    Index(None, "expires_ms"),
)

# Secure-aggregation outcomes: padded sums the researcher fetches and unpads.
aggregates = Table(
    "aggregates",
    metadata,
    Column("task_id", ID, ForeignKey("tasks.id"), primary_key=True),
    Column("session", String(), primary_key=True),
    Column("meta", Text, nullable=False),
    Column("total", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", AUTO_ID, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", ID, nullable=False),
    Column("action", String(), nullable=False),
    Column("target", Text, nullable=False),
    Column("outcome", String(), nullable=False),
    Column("detail", Text, nullable=False),
    Index(None, "at_ms"),
)


def upgrade_to_head(sync_url: URL) -> None:
    """Bring the database at ``sync_url`` to the newest migration (``alembic upgrade head``).

    Blocking: ``SqlStore.initialise`` calls it in a worker thread. A database already at
    head is left as it is. No ``alembic.ini`` is needed: the config is built here.

    Parameters
    ----------
    sync_url
        A URL for a synchronous driver (``sqlite:///...``, ``postgresql+psycopg://...``).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    # SQLite's busy timeout is the driver default (5 s); foreign keys stay off, as
    # Alembic's batch mode needs to rebuild tables others point at.
    engine = create_engine(sync_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                connection.execute(lock, {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
