"""transparency log: entries, the head row (one writer at a time), checkpoints, cosignatures

The Merkle log of trust-relevant events (docs/transparency-log.md): entries are appended in the
transaction of the change they record, under a lock on the single head row, which this
migration creates empty.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tlog_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_tlog_entries")),
    )
    op.create_index("ix_tlog_entries_subject", "tlog_entries", ["subject", "idx"], unique=False)
    head = op.create_table(
        "tlog_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("tiles_size", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(length=256), nullable=True),
        sa.Column("vkey", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tlog_head")),
    )
    op.bulk_insert(head, [{"id": 1, "size": 0, "tiles_size": 0, "origin": None, "vkey": None}])
    op.create_table(
        "tlog_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tlog_checkpoints")),
    )
    op.create_index(op.f("ix_tlog_checkpoints_size"), "tlog_checkpoints", ["size"], unique=False)
    op.create_table(
        "tlog_cosignatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("witness", sa.String(length=256), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["tlog_checkpoints.id"],
            name=op.f("fk_tlog_cosignatures_checkpoint_id_tlog_checkpoints"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tlog_cosignatures")),
        sa.UniqueConstraint(
            "checkpoint_id", "witness", name=op.f("uq_tlog_cosignatures_checkpoint_id")
        ),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("tlog_cosignatures")
    op.drop_index(op.f("ix_tlog_checkpoints_size"), table_name="tlog_checkpoints")
    op.drop_table("tlog_checkpoints")
    op.drop_table("tlog_head")
    op.drop_index("ix_tlog_entries_subject", table_name="tlog_entries")
    op.drop_table("tlog_entries")
