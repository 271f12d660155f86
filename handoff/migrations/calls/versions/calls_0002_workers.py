"""Workers of a pool: ``calls.worker_id`` (indexed, filled from ``context.worker``) and the
``workers`` heartbeat table a live worker reads to find dead ones.

Revision ID: calls_0002
Revises: calls_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "calls_0002"
down_revision = "calls_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("worker_id", sa.String(128), nullable=True))
    op.create_index("ix_calls_worker_id", "calls", ["worker_id"])
    # The worker was kept in the context JSON; read it in Python, the same on both backends.
    calls = sa.table("calls", sa.column("id", sa.String), sa.column("context", sa.JSON),
                     sa.column("worker_id", sa.String))
    bind = op.get_bind()
    owners = [(row.id, (row.context or {}).get("worker"))
              for row in bind.execute(sa.select(calls.c.id, calls.c.context))]
    for call_id, worker in owners:
        if isinstance(worker, str) and worker:
            bind.execute(calls.update().where(calls.c.id == call_id)
                         .values(worker_id=worker[:128]))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(128), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False))
    op.create_index("ix_workers_last_seen", "workers", ["last_seen"])


def downgrade() -> None:
    op.drop_index("ix_workers_last_seen", "workers")
    op.drop_table("workers")
    op.drop_index("ix_calls_worker_id", "calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("worker_id")
