"""The stores on a real PostgreSQL (a throwaway cluster, tests/postgres.py): the call store, the
handoff store and the CRM round-trip; a worker that stops heartbeating has its open calls closed
as worker-lost by another live worker (and by only one of two); a handoff written by one
worker reaches the desktop hub of another through LISTEN/NOTIFY (and through polling on
SQLite)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
from test_desktop import alex_package

from handoff.crm import DEMO_ORDER, DEMO_PHONE, CrmStore, seed
from handoff.desktop import DesktopHub
from handoff.live import HandoffFeed
from handoff.migrate import CHAINS, current, head
from handoff.store import HandoffStore
from voice.app.callstore import WORKER_LOST, CallRecord, CallStore

BAD = "\udcff\udcfe\udcfd"  # bytes of a From name that are not UTF-8, as PJSIP hands them


def plain(url: str) -> str:
    """The URL as libpq tools write it (``postgresql://``): the stores map it to psycopg 3."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_call_store_handoff_store_and_crm_round_trip_on_one_database(fresh_postgres_db,
                                                                     tmp_path):
    url = plain(fresh_postgres_db)
    crm = CrmStore(url)
    seed(crm, customers=20)
    calls = CallStore(url, tmp_path / "spool", worker="pg-host:5070")
    handoffs = HandoffStore(url, tmp_path / "handoff-spool", worker="pg-host:5070")
    for store in (crm, calls, handoffs):
        assert store.engine.dialect.driver == "psycopg"
    for chain in CHAINS:  # three chains, three version tables, one database
        assert current(calls.engine, chain) == head(chain)

    customer = crm.customer_by_phone(DEMO_PHONE)
    assert customer is not None and customer.name
    assert crm.order(DEMO_ORDER).number == DEMO_ORDER

    calls.save_call(CallRecord(id="c1", started_at=1000.0, answered_at=1000.5,
                               sip_call_id="abc@10.0.0.1", caller_number=DEMO_PHONE,
                               context={"caller_name": BAD + "\x00", "journey_id": "j1"}))
    calls.save_turn("c1", {"turn": 1, "caller": "where is my order\x00", "speech_end_s": 2.0})
    calls.save_call(CallRecord(id="c1", started_at=1000.0, answered_at=1000.5,
                               ended_at=1010.0, end_reason="caller-hangup",
                               caller_number=DEMO_PHONE,
                               context={"caller_name": BAD, "journey_id": "j1"}))
    got = calls.get("c1")
    assert got["end_reason"] == "caller-hangup" and got["worker_id"] == "pg-host:5070"
    assert got["context"]["caller_name"] == "\\xff\\xfe\\xfd"
    assert got["turns"] == [{"turn": 1, "caller": "where is my order\\x00",
                             "speech_end_s": 2.0}]
    assert [c["call_id"] for c in calls.between(0, 2000)] == ["c1"]
    assert calls.journey_of(DEMO_PHONE, 0, before=2000) == "j1"
    assert not (tmp_path / "spool").exists()  # nothing had to be spooled

    handoff_id = handoffs.save(alex_package(f"h-{uuid.uuid4().hex[:8]}"))
    handoffs.update_transfer(handoff_id, "connected", agent_uri="sip:bob@pbx.test",
                             attempt_result="connected")
    handoffs.record_delivery(handoff_id, "http://crm.test/hook", 1, status_code=200,
                             delivered=True)
    handoffs.set_disposition(handoff_id, "needed-human", "Dana")
    [latest] = handoffs.latest(5)
    assert latest["handoff_id"] == handoff_id and latest["worker_id"] == "pg-host:5070"
    assert latest["transfer"]["outcome"] == "connected"
    assert [d["status_code"] for d in latest["deliveries"]] == [200]
    assert handoffs.disposition(handoff_id)["disposition"] == "needed-human"
    assert handoffs.spooled() == []


def test_a_silent_worker_s_calls_are_closed_by_a_live_one(fresh_postgres_db, tmp_path):
    dead = CallStore(fresh_postgres_db, tmp_path / "a", worker="host:5071")
    live = CallStore(fresh_postgres_db, tmp_path / "b", worker="host:5072")
    t0 = time.time()
    dead.heartbeat(now=t0)
    live.heartbeat(now=t0)
    dead.save_call(CallRecord(id="lost", started_at=t0, answered_at=t0 + 1))
    dead.save_turn("lost", {"turn": 1, "speech_end_s": 6.0})
    dead.save_call(CallRecord(id="finished", started_at=t0, ended_at=t0 + 3,
                              end_reason="caller-hangup"))
    live.save_call(CallRecord(id="mine", started_at=t0, answered_at=t0 + 1))

    # Within the timeout nothing is closed: the quiet worker may only be busy.
    live.heartbeat(now=t0 + 20)
    assert live.close_dead_workers(30, now=t0 + 20) == {}
    # Past it, the live worker closes the silent one's open call, and only that.
    live.heartbeat(now=t0 + 40)
    assert live.close_dead_workers(30, now=t0 + 40) == {"host:5071": ["lost"]}
    lost = live.get("lost")
    assert lost["end_reason"] == WORKER_LOST
    assert lost["context"]["closed_by"] == "host:5072"
    # ended when it was last known up: its answer plus the end of the caller's turn
    ended = {c["call_id"]: c["ended_at"] for c in live.between(0, t0 + 1)}
    assert ended["lost"] == pytest.approx(t0 + 7)
    assert live.get("finished")["end_reason"] == "caller-hangup"
    assert live.get("mine")["ended_at"] is None
    assert [w["worker_id"] for w in live.workers()] == ["host:5072"]  # the dead one forgotten
    assert live.close_dead_workers(30, now=t0 + 50) == {}


def test_two_live_workers_close_a_dead_worker_s_calls_once(fresh_postgres_db, tmp_path):
    dead = CallStore(fresh_postgres_db, tmp_path / "a", worker="dead:1")
    t0 = time.time() - 120
    dead.heartbeat(now=t0)
    for i in range(20):
        dead.save_call(CallRecord(id=f"up-{i}", started_at=t0 + i))
    results: list[dict[str, list[str]]] = []
    barrier = threading.Barrier(2)

    def reconcile(worker: str) -> None:
        store = CallStore(fresh_postgres_db, tmp_path / worker, worker=worker)
        store.heartbeat()
        barrier.wait()
        results.append(store.close_dead_workers(30))

    threads = [threading.Thread(target=reconcile, args=(w,)) for w in ("live:1", "live:2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    closed = [call for result in results for calls in result.values() for call in calls]
    assert sorted(closed) == sorted(f"up-{i}" for i in range(20))  # each exactly once
    rows = dead.between(0, time.time())
    assert {r["end_reason"] for r in rows} == {WORKER_LOST}
    assert len({r["context"]["closed_by"] for r in rows}) == 1


def test_a_worker_that_comes_back_writes_its_call_s_real_end(fresh_postgres_db, tmp_path):
    slow = CallStore(fresh_postgres_db, tmp_path / "a", worker="slow:1")
    live = CallStore(fresh_postgres_db, tmp_path / "b", worker="live:1")
    t0 = time.time()
    slow.heartbeat(now=t0 - 100)
    slow.save_call(CallRecord(id="c", started_at=t0 - 90, answered_at=t0 - 89))
    live.heartbeat(now=t0)
    assert live.close_dead_workers(30, now=t0) == {"slow:1": ["c"]}
    slow.save_call(CallRecord(id="c", started_at=t0 - 90, answered_at=t0 - 89, ended_at=t0,
                              end_reason="caller-hangup"))
    assert live.get("c")["end_reason"] == "caller-hangup"


async def _until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def _feed_brings_other_workers_handoffs(url: str, tmp_path, poll_s: float) -> None:
    worker_a = HandoffStore(url, tmp_path / "spool-a", worker="host:5081")
    worker_b = HandoffStore(url, tmp_path / "spool-b", worker="host:5082")
    hub_b = DesktopHub({"tok": "Dana"})
    feed = HandoffFeed(worker_b, hub_b, poll_s=poll_s)
    task = asyncio.create_task(feed.run())
    try:
        if feed.mode == "listen":
            await asyncio.wait_for(feed.listening.wait(), 15)
        theirs = f"h-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(worker_a.save, alex_package(theirs))
        await _until(lambda: hub_b.holds(theirs))
        [shown] = hub_b.pending()
        assert shown["package"]["worker_id"] == "host:5081"
        assert shown["package"]["summary"].startswith("Alex Morgan")
        assert "deliveries" not in shown["package"]
        # A later outcome follows; a closed one leaves the pending list.
        await asyncio.to_thread(worker_a.update_transfer, theirs, "connected",
                                agent_uri="sip:bob@pbx.test", attempt_result="connected")
        await _until(lambda: hub_b.pending() == [])
        # B's own handoffs reach its hub through its publisher, not through the feed.
        mine = f"h-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(worker_b.save, alex_package(mine))
        later = f"h-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(worker_a.save, alex_package(later))
        await _until(lambda: hub_b.holds(later))
        assert not hub_b.holds(mine)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        worker_a.close()
        worker_b.close()


async def test_listen_notify_brings_another_worker_s_handoff_to_the_desktop(
        fresh_postgres_db, tmp_path):
    await _feed_brings_other_workers_handoffs(fresh_postgres_db, tmp_path, poll_s=30)


async def test_on_sqlite_the_desktop_polls_for_other_workers_handoffs(tmp_path):
    await _feed_brings_other_workers_handoffs(f"sqlite:///{tmp_path}/handoffs.sqlite",
                                              tmp_path, poll_s=0.1)


async def test_listen_reconnects_and_catches_up_after_its_connection_is_killed(
        fresh_postgres_db, tmp_path):
    """A handoff written while the feed's connection was down is shown once it is back."""
    import psycopg

    worker_a = HandoffStore(fresh_postgres_db, tmp_path / "a", worker="host:5091")
    worker_b = HandoffStore(fresh_postgres_db, tmp_path / "b", worker="host:5092")
    hub_b = DesktopHub({"tok": "Dana"})
    feed = HandoffFeed(worker_b, hub_b, poll_s=0.5)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.listening.wait(), 15)
        conninfo = fresh_postgres_db.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
        await _until(lambda: not feed.listening.is_set())
        missed = f"h-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(worker_a.save, alex_package(missed))
        await _until(lambda: hub_b.holds(missed))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        worker_a.close()
        worker_b.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_api_lists_every_worker_s_calls(backend, request, tmp_path):
    """Two workers on one database: either one's store lists both's calls, each with its
    worker (what GET /api/calls returns)."""
    url = (request.getfixturevalue("fresh_postgres_db") if backend == "postgresql"
           else f"sqlite:///{tmp_path}/ivr.sqlite")
    one = CallStore(url, tmp_path / "1", worker="host:5061")
    two = CallStore(url, tmp_path / "2", worker="host:5062")
    one.save_call(CallRecord(id="x", started_at=1.0))
    two.save_call(CallRecord(id="y", started_at=2.0))
    assert {(c["call_id"], c["worker_id"]) for c in one.latest(10)} == {
        ("x", "host:5061"), ("y", "host:5062")}


def test_a_worker_timeout_shorter_than_two_heartbeats_is_refused():
    from pydantic import ValidationError

    from voice.app.settings import IvrSettings

    with pytest.raises(ValidationError, match="worker_lost_after_s"):
        IvrSettings.load(None, server__heartbeat_interval_s=20, server__worker_lost_after_s=30)
    assert IvrSettings.load(None, server__heartbeat_interval_s=0.5,
                            server__worker_lost_after_s=3).server.worker_lost_after_s == 3
