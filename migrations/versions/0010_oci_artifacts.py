"""oci artifacts: stored ModelPack manifests, referrer manifests, manifest-digest releases

A version's OCI manifest is stored the first time it is served, so that its digest (which the
registry signs at release) never changes, whatever later code would generate.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oci_artifacts",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("manifest_digest", sa.String(length=64), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("config_digest", sa.String(length=64), nullable=False),
        sa.Column("config", sa.LargeBinary(), nullable=False),
        sa.Column("release_digest", sa.String(length=64), nullable=True),
        sa.Column("release_bundle", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"],
            name=op.f("fk_oci_artifacts_version_id_versions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_oci_artifacts")),
    )  # fmt: skip
    with op.batch_alter_table("oci_artifacts", schema=None) as batch_op:
        for column in ("manifest_digest", "config_digest", "release_digest"):
            batch_op.create_index(batch_op.f(f"ix_oci_artifacts_{column}"), [column])

    op.create_table(
        "oci_referrers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("attestation_id", sa.Integer(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("predicate_type", sa.String(length=256), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["attestation_id"], ["attestations.id"],
            name=op.f("fk_oci_referrers_attestation_id_attestations"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"],
            name=op.f("fk_oci_referrers_version_id_versions"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oci_referrers")),
        sa.UniqueConstraint("version_id", "digest", name=op.f("uq_oci_referrers_version_id")),
    )  # fmt: skip
    with op.batch_alter_table("oci_referrers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oci_referrers_digest"), ["digest"])


def downgrade() -> None:
    with op.batch_alter_table("oci_referrers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oci_referrers_digest"))
    op.drop_table("oci_referrers")
    with op.batch_alter_table("oci_artifacts", schema=None) as batch_op:
        for column in ("release_digest", "config_digest", "manifest_digest"):
            batch_op.drop_index(batch_op.f(f"ix_oci_artifacts_{column}"))
    op.drop_table("oci_artifacts")
