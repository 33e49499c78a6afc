"""versions.scan_ruleset: the ruleset of a version's newest registry scan

A pending version scanned under a ruleset older than the scanner's minimum is put back to
``scanning`` at start-up and scanned again (``registry.server.services.scanning.rescan_outdated``):
its files are served to producers and evaluation jobs, so it must not wait for a release attempt
to be judged by the current rules. Existing versions start with NULL, which counts as outdated.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("scan_ruleset", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("scan_ruleset")
