"""Secure-aggregation outcomes: one padded sum per task and session.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "aggregates",
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("session", sa.String(), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("total", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_aggregates_task_id_tasks")),
        sa.PrimaryKeyConstraint("task_id", "session", name=op.f("pk_aggregates")),
    )


def downgrade() -> None:
    op.drop_table("aggregates")
