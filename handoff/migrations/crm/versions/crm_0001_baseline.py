"""Baseline: the CRM as ``create_all`` made it before migrations.

Only missing tables are created: a database made by ``create_all`` comes under Alembic with
its rows as they are.

Revision ID: crm_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "crm_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "customers" not in existing:
        op.create_table(
            "customers",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(120), nullable=False),
            sa.Column("phone", sa.String(32), nullable=False),
            sa.Column("tier", sa.String(16), nullable=False),
            sa.Column("language", sa.String(8), nullable=False))
        op.create_index("ix_customers_phone", "customers", ["phone"])
    if "accounts" not in existing:
        op.create_table(
            "accounts",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("number", sa.String(16), nullable=False),
            sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"),
                      nullable=False),
            sa.Column("balance_cents", sa.Integer, nullable=False))
        op.create_index("ix_accounts_number", "accounts", ["number"], unique=True)
    if "orders" not in existing:
        op.create_table(
            "orders",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("number", sa.String(16), nullable=False),
            sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"),
                      nullable=False),
            sa.Column("status", sa.String(24), nullable=False),
            sa.Column("carrier", sa.String(16), nullable=True),
            sa.Column("placed_on", sa.Date, nullable=False),
            sa.Column("eta", sa.Date, nullable=True))
        op.create_index("ix_orders_number", "orders", ["number"], unique=True)
    if "charges" not in existing:
        op.create_table(
            "charges",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
            sa.Column("amount_cents", sa.Integer, nullable=False),
            sa.Column("description", sa.String(120), nullable=False),
            sa.Column("charged_on", sa.Date, nullable=False))
        op.create_index("ix_charges_account_id", "charges", ["account_id"])
    if "cases" not in existing:
        op.create_table(
            "cases",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=True),
            sa.Column("subject", sa.String(200), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("notes", sa.String(4000), nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False))
    if "callbacks" not in existing:
        op.create_table(
            "callbacks",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=True),
            sa.Column("phone", sa.String(32), nullable=False),
            sa.Column("window", sa.String(64), nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False))


def downgrade() -> None:
    for table in ("callbacks", "cases", "charges", "orders", "accounts", "customers"):
        op.drop_table(table)
