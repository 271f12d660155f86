"""Two real `ivr serve` workers on one PostgreSQL: worker A is killed with SIGKILL while a call
is up; worker B, alive, sees A's heartbeat stop and closes A's call as `worker-lost` (not at a
restart: nobody restarts A). Either worker's API lists the pool's calls; B leaves the workers
table when it stops cleanly."""

from __future__ import annotations

import threading
import time

import pytest

from bench.harness import IvrProcess
from tests.sip.raw_uac import RawUac
from voice.app.callstore import CallStore

pytestmark = pytest.mark.slow


def config(worker: str, url: str) -> dict:
    return {"call": {"handler": "echo"}, "sip": {"max_silence_s": 60},
            "server": {"worker_id": worker, "store_url": url, "heartbeat_interval_s": 0.5,
                       "worker_lost_after_s": 3.0}}


def test_a_live_worker_closes_the_calls_of_a_killed_one(fresh_postgres_db, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = IvrProcess(tmp_path / "a", config("worker-a", fresh_postgres_db))
    b = IvrProcess(tmp_path / "b", config("worker-b", fresh_postgres_db))
    # Both start together (models load in parallel; migrations run once under the lock).
    starter = threading.Thread(target=b.start)
    starter.start()
    a.start()
    starter.join(200)
    uac = RawUac(a.sip_port, caller=b"+15550000888")
    try:
        assert uac.invite() == 200
        deadline = time.time() + 20
        while time.time() < deadline and not [c for c in b.calls()  # B's API shows A's call
                                              if c["caller_number"] == "+15550000888"]:
            time.sleep(0.2)
        [up] = [c for c in b.calls() if c["caller_number"] == "+15550000888"]
        assert up["worker_id"] == "worker-a" and up["ended_at"] is None
        time.sleep(1.0)
        a.proc.kill()  # SIGKILL: no BYE, no final record, no goodbye from the worker
        a.proc.wait(10)
        killed_at = time.time()

        deadline = time.time() + 30
        while time.time() < deadline:
            row = next(c for c in b.calls() if c["call_id"] == up["call_id"])
            if row["end_reason"]:
                break
            time.sleep(0.3)
        assert row["end_reason"] == "worker-lost", row
        assert row["context"]["closed_by"] == "worker-b"
        assert time.time() - killed_at >= 3.0 - 0.5  # not before the heartbeat went stale
        assert "worker worker-a silent" in b.log()
    finally:
        uac.close()
        if a.proc.poll() is None:
            a.proc.kill()
        assert b.stop() == 0
    store = CallStore(fresh_postgres_db, tmp_path / "spool")
    assert store.workers() == []  # A forgotten by B, B gone on its clean stop
    assert [c for c in store.latest(20) if c["ended_at"] is None] == []
