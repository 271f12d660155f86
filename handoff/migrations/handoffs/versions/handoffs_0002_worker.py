"""Workers of a pool: ``handoffs.worker_id``, the worker whose call the handoff came from
(shown by the API and the desktop; the desktop's live feed skips its own worker's).

Revision ID: handoffs_0002
Revises: handoffs_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "handoffs_0002"
down_revision = "handoffs_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("worker_id", sa.String(128), nullable=True))
    op.create_index("ix_handoffs_updated_at", "handoffs", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_updated_at", "handoffs")
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("worker_id")
