"""Evaluations (scoring jobs of a run's checkpoint) and the epoch a run's best checkpoint holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)  # stored in UTC (core.models.UTCDateTime)
STATUSES = "'queued', 'running', 'succeeded', 'failed', 'cancelled'"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("best_epoch", sa.Integer(), nullable=True))
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("checkpoint", sa.String(8), nullable=False),
        sa.Column("checkpoint_used", sa.String(8), nullable=True),
        sa.Column("checkpoint_epoch", sa.Integer(), nullable=True),
        sa.Column("dataset", sa.String(255), nullable=False),
        sa.Column("dataset_sha256", sa.String(64), nullable=True),
        sa.Column("split", sa.String(8), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), server_default="queued", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("task_id", sa.String(255), nullable=True),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.Column("sends", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("metric", sa.String(32), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_evaluations_status")),
        sa.CheckConstraint("checkpoint IN ('best', 'last')", name=op.f("ck_evaluations_checkpoint")),
        sa.CheckConstraint("split IN ('val', 'test')", name=op.f("ck_evaluations_split")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_evaluations_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint("request_key", name=op.f("uq_evaluations_request_key")),
    )
    op.create_index(op.f("ix_evaluations_run_id"), "evaluations", ["run_id"])
    op.create_index(op.f("ix_evaluations_status"), "evaluations", ["status"])
    op.create_index(op.f("ix_evaluations_created_at"), "evaluations", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_evaluations_created_at"), table_name="evaluations")
    op.drop_index(op.f("ix_evaluations_status"), table_name="evaluations")
    op.drop_index(op.f("ix_evaluations_run_id"), table_name="evaluations")
    op.drop_table("evaluations")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("best_epoch")
