"""bom jobs: ML-BOMs are built by a worker in any replica, off the request path

One row per model version, written in the transaction of the change that calls for a build (the
commit, the scan, provenance, evaluation results) and claimed by a worker (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, a conditional UPDATE on SQLite) under a lease.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bom_jobs",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("again", sa.Boolean(), nullable=False),
        sa.Column("claim", sa.String(length=64), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"],
            name=op.f("fk_bom_jobs_version_id_versions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_bom_jobs")),
    )  # fmt: skip
    with op.batch_alter_table("bom_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_bom_jobs_due", ["status", "due_at"])


def downgrade() -> None:
    with op.batch_alter_table("bom_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_bom_jobs_due")
    op.drop_table("bom_jobs")
