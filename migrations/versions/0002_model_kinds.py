"""Model kinds are plain text checked by the API against the kind registry (no CHECK constraint).

A new kind registered in ml.kinds needs no migration. The columns also grow to the registry's name limit.

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

BUILTIN_KINDS = "model IN ('cnn', 'seq2seq')"  # what 0001 allowed


def upgrade() -> None:
    for table in ("runs", "promoted_models"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_model"), type_="check")
            batch.alter_column("model", type_=sa.String(32), existing_type=sa.String(16), existing_nullable=False)


def downgrade() -> None:
    for table in ("runs", "promoted_models"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("model", type_=sa.String(16), existing_type=sa.String(32), existing_nullable=False)
            batch.create_check_constraint(op.f(f"ck_{table}_model"), BUILTIN_KINDS)
