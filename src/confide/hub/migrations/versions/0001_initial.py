"""Initial schema: directory, tasks, runs, results, mailbox and audit log.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
    )
    for party_table in ("nodes", "researchers"):
        op.create_table(
            party_table,
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("organisation_id", sa.String(), nullable=False),
            sa.Column("token_hash", sa.String(), nullable=False),
            sa.Column("certificate_pem", sa.LargeBinary(), nullable=False),
            sa.ForeignKeyConstraint(
                ["organisation_id"],
                ["organisations.id"],
                name=op.f(f"fk_{party_table}_organisation_id_organisations"),
            ),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{party_table}")),
            sa.UniqueConstraint("token_hash", name=op.f(f"uq_{party_table}_token_hash")),
        )
    op.create_table(
        "collaborations",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collaborations")),
    )
    op.create_table(
        "collaboration_members",
        sa.Column("collaboration_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("party_id", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collaboration_id"],
            ["collaborations.id"],
            name=op.f("fk_collaboration_members_collaboration_id_collaborations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "collaboration_id", "role", "party_id", name=op.f("pk_collaboration_members")
        ),
    )
    op.create_index(op.f("ix_collaboration_members_party_id"), "collaboration_members", ["party_id"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("collaboration_id", sa.String(), nullable=False),
        sa.Column("researcher_id", sa.String(), nullable=False),
        sa.Column("algorithm", sa.String(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collaboration_id"],
            ["collaborations.id"],
            name=op.f("fk_tasks_collaboration_id_collaborations"),
        ),
        sa.ForeignKeyConstraint(
            ["researcher_id"], ["researchers.id"], name=op.f("fk_tasks_researcher_id_researchers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(op.f("ix_tasks_collaboration_id_created_ms"), "tasks", ["collaboration_id", "created_ms"])
    op.create_table(
        "runs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("node_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input_envelope", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_runs_node_id_nodes")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_runs_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_task_id"), "runs", ["task_id"])
    op.create_index(op.f("ix_runs_node_id_status"), "runs", ["node_id", "status"])
    op.create_table(
        "results",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("node_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_results_run_id_runs")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_results_task_id_tasks")),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_results_node_id_nodes")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_results")),
    )
    op.create_index(op.f("ix_results_task_id"), "results", ["task_id"])
    op.create_table(
        "mailbox",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox")),
    )
    op.create_index(op.f("ix_mailbox_recipient_created_ms"), "mailbox", ["recipient", "created_ms"])
    op.create_index(op.f("ix_mailbox_expires_ms"), "mailbox", ["expires_ms"])
    op.create_table(
        "audit_events",
        # SQLite auto-increments only a column declared exactly INTEGER PRIMARY KEY.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at_ms"), "audit_events", ["at_ms"])


def downgrade() -> None:
    for table in (
        "audit_events",
        "mailbox",
        "results",
        "runs",
        "tasks",
        "collaboration_members",
        "collaborations",
        "researchers",
        "nodes",
        "organisations",
    ):
        op.drop_table(table)
