"""Baseline: the call store as ``create_all`` made it before migrations (calls, call_turns).

Only missing tables are created: a database made by ``create_all`` comes under Alembic with
its rows as they are.

Revision ID: calls_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "calls_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "calls" not in existing:
        op.create_table(
            "calls",
            sa.Column("id", sa.String(40), primary_key=True),
            sa.Column("sip_call_id", sa.String(256), nullable=True),
            sa.Column("transport", sa.String(16), nullable=False),
            sa.Column("caller_number", sa.String(64), nullable=True),
            sa.Column("called_number", sa.String(64), nullable=True),
            sa.Column("source", sa.String(80), nullable=True),
            sa.Column("codec", sa.String(24), nullable=True),
            sa.Column("started_at", sa.Float, nullable=False),
            sa.Column("answered_at", sa.Float, nullable=True),
            sa.Column("ended_at", sa.Float, nullable=True),
            sa.Column("end_reason", sa.String(40), nullable=True),
            sa.Column("context", sa.JSON, nullable=False))
        op.create_index("ix_calls_sip_call_id", "calls", ["sip_call_id"])
        op.create_index("ix_calls_started_at", "calls", ["started_at"])
    if "call_turns" not in existing:
        op.create_table(
            "call_turns",
            sa.Column("call_id", sa.String(40), sa.ForeignKey("calls.id"), primary_key=True),
            sa.Column("turn", sa.Integer, primary_key=True),
            sa.Column("record", sa.JSON, nullable=False))


def downgrade() -> None:
    op.drop_table("call_turns")
    op.drop_table("calls")
