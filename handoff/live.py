"""The desktop's live feed across a pool: handoffs written by any worker reach the agents'
pages served by every worker.

A worker publishes its own handoffs to its desktop hub directly (``HandoffPublisher``); this
feed brings those of the other workers, from the shared handoff store:

- on PostgreSQL by ``LISTEN ivr_handoffs``: the store sends ``pg_notify`` in the transaction
  that writes a package or changes its transfer (:data:`handoff.store.NOTIFY_CHANNEL`), and
  the feed, an asyncio task on psycopg's async connection (no thread), reads the row and
  publishes it. After every (re)connect it catches up on what changed while it was not
  listening, so a dropped connection loses no handoff;
- on SQLite (one host, no NOTIFY) by polling the handoffs' ``updated_at`` every ``poll_s``.

Either way the hub sees a new handoff as ``publish`` and a later outcome as ``update``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from loguru import logger

from handoff.desktop import DesktopHub
from handoff.store import NOTIFY_CHANNEL, HandoffStore


class HandoffFeed:
    """Feed ``hub`` with the handoffs other workers write to ``store``.

    Args:
        store: the shared handoff store; its ``worker`` is this worker (its own handoffs are
            skipped: they reach the hub directly).
        hub: the desktop hub of this worker.
        poll_s: how often SQLite is polled; with PostgreSQL, how long a lost connection waits
            before it is opened again.
    """

    def __init__(self, store: HandoffStore, hub: DesktopHub, *, poll_s: float = 1.0) -> None:
        self.store = store
        self.hub = hub
        self.poll_s = poll_s
        self.listening = asyncio.Event()  # set while LISTEN is active (PostgreSQL)
        # Start a little back: a handoff written while this worker was starting is shown too.
        self._cursor = (datetime.now(UTC) - timedelta(seconds=5)).isoformat(
            timespec="milliseconds")
        self._seen: dict[str, str] = {}  # handoff id -> updated_at already delivered

    @property
    def mode(self) -> str:
        return "listen" if self.store.engine.dialect.name == "postgresql" else "poll"

    async def run(self) -> None:
        """Until cancelled."""
        if self.mode == "listen":
            await self._listen()
        else:
            while True:
                await self._catch_up()
                await asyncio.sleep(self.poll_s)

    async def _listen(self) -> None:
        import psycopg

        url = self.store.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo,
                                                                 autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    await self._catch_up()  # what changed before LISTEN took effect
                    async for note in conn.notifies():
                        await self._notified(note.payload)
            except (psycopg.Error, OSError) as error:
                self.listening.clear()
                logger.warning(f"desktop feed: LISTEN {NOTIFY_CHANNEL} lost ({error}); "
                               f"again in {self.poll_s:.0f} s")
                await asyncio.sleep(self.poll_s)

    async def _notified(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            handoff_id, worker = str(note["handoff_id"]), note.get("worker")
        except (ValueError, KeyError, TypeError):
            logger.warning(f"desktop feed: notification not understood: {payload[:200]!r}")
            return
        await self._deliver(handoff_id, worker, note.get("kind") == "package")

    async def _catch_up(self) -> None:
        try:
            changes = await asyncio.to_thread(self.store.changed_since, self._cursor)
        except Exception as error:  # noqa: BLE001 - the database is away: try again later
            logger.warning(f"desktop feed: cannot read handoffs: {error}")
            return
        for change in changes:
            if self._seen.get(change["handoff_id"]) == change["updated_at"]:
                continue
            self._seen[change["handoff_id"]] = change["updated_at"]
            await self._deliver(change["handoff_id"], change["worker_id"], False)
            self._cursor = max(self._cursor, change["updated_at"])
        # Only changes at the cursor's instant can come again (>= in changed_since).
        self._seen = {k: v for k, v in self._seen.items() if v >= self._cursor}

    async def _deliver(self, handoff_id: str, worker: str | None, new: bool) -> None:
        if worker is not None and worker == self.store.worker:
            return  # this worker's own: its publisher has shown it
        try:
            package = await asyncio.to_thread(self.store.get, handoff_id)
        except Exception as error:  # noqa: BLE001 - shown on the next change or catch-up
            logger.warning(f"desktop feed: cannot read handoff {handoff_id}: {error}")
            return
        if package is None:
            return
        package.pop("deliveries", None)  # the store's bookkeeping, not the agent's business
        try:
            if new or not self.hub.holds(handoff_id):
                await self.hub.publish(package)
            else:
                await self.hub.update(handoff_id, _outcome(package))
        except (ValueError, KeyError) as error:
            logger.warning(f"desktop feed: handoff {handoff_id} not shown: {error}")


def _outcome(package: dict[str, Any]) -> str:
    return (package.get("transfer") or {}).get("outcome") or "pending"
