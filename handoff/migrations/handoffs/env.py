"""Alembic environment of the handoffs store's migrations (see handoff.migrate)."""

from alembic import context

from handoff.migrate import run_env

run_env(context)
