"""Accounts can be disabled: ``accounts.disabled_at``, empty for every existing account.

Compatible with the previous release: a nullable column it does not know is ignored by
its queries, so an old gatekeeper keeps serving while the fleet is upgraded (it does not
refuse disabled users until it is replaced).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("disabled_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("disabled_at")
