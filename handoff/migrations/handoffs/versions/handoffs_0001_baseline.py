"""Baseline: the handoff store as ``create_all`` made it before migrations (handoffs,
deliveries, handoff_dispositions).

Only missing tables are created: a database made by ``create_all`` (with or without the
dispositions table, which came later) comes under Alembic with its rows as they are.

Revision ID: handoffs_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "handoffs_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "handoffs" not in existing:
        op.create_table(
            "handoffs",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("call_id", sa.String(128), nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("package", sa.JSON, nullable=False),
            sa.Column("transfer_outcome", sa.String(16), nullable=False),
            sa.Column("updated_at", sa.String(40), nullable=False))
        op.create_index("ix_handoffs_call_id", "handoffs", ["call_id"])
        op.create_index("ix_handoffs_created_at", "handoffs", ["created_at"])
    if "deliveries" not in existing:
        op.create_table(
            "deliveries",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("handoff_id", sa.String(64), sa.ForeignKey("handoffs.id"),
                      nullable=False),
            sa.Column("target_url", sa.String(500), nullable=False),
            sa.Column("attempt", sa.Integer, nullable=False),
            sa.Column("status_code", sa.Integer, nullable=True),
            sa.Column("error", sa.Text, nullable=True),
            sa.Column("at", sa.String(40), nullable=False),
            sa.Column("delivered", sa.Boolean, nullable=False))
        op.create_index("ix_deliveries_handoff_id", "deliveries", ["handoff_id"])
    if "handoff_dispositions" not in existing:
        op.create_table(
            "handoff_dispositions",
            sa.Column("handoff_id", sa.String(64), sa.ForeignKey("handoffs.id"),
                      primary_key=True),
            sa.Column("disposition", sa.String(32), nullable=False),
            sa.Column("agent", sa.String(128), nullable=False),
            sa.Column("at", sa.String(40), nullable=False))
        op.create_index("ix_handoff_dispositions_at", "handoff_dispositions", ["at"])


def downgrade() -> None:
    op.drop_table("handoff_dispositions")
    op.drop_table("deliveries")
    op.drop_table("handoffs")
