"""Schema migrations (Alembic, handoff/migrate.py) on SQLite and PostgreSQL: an empty database
comes up at head with exactly the stores' tables; a database holding rows of the previous
schema (made by the stores' ``create_all`` before migrations, frozen below) is upgraded by
simply opening the stores, its rows kept and the new columns filled; several workers opening
one database at once migrate it once."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from handoff import crm as crm_module
from handoff import store as handoff_module
from handoff.crm import CrmStore
from handoff.db import open_engine
from handoff.migrate import CHAINS, current, head, upgrade, version_table
from handoff.store import HandoffStore
from voice.app import callstore as call_module
from voice.app.callstore import WORKER_LOST, CallStore

METADATA = {"calls": call_module.Base.metadata, "handoffs": handoff_module._Base.metadata,
            "crm": crm_module.Base.metadata}


def previous_schema() -> sa.MetaData:
    """The call and handoff tables as ``create_all`` made them before migrations (the CRM's
    have not changed: its own models make them)."""
    meta = sa.MetaData()
    sa.Table("calls", meta,
             sa.Column("id", sa.String(40), primary_key=True),
             sa.Column("sip_call_id", sa.String(256), index=True),
             sa.Column("transport", sa.String(16), nullable=False),
             sa.Column("caller_number", sa.String(64)),
             sa.Column("called_number", sa.String(64)),
             sa.Column("source", sa.String(80)),
             sa.Column("codec", sa.String(24)),
             sa.Column("started_at", sa.Float, nullable=False, index=True),
             sa.Column("answered_at", sa.Float),
             sa.Column("ended_at", sa.Float),
             sa.Column("end_reason", sa.String(40)),
             sa.Column("context", sa.JSON, nullable=False))
    sa.Table("call_turns", meta,
             sa.Column("call_id", sa.String(40), sa.ForeignKey("calls.id"), primary_key=True),
             sa.Column("turn", sa.Integer, primary_key=True),
             sa.Column("record", sa.JSON, nullable=False))
    sa.Table("handoffs", meta,
             sa.Column("id", sa.String(64), primary_key=True),
             sa.Column("call_id", sa.String(128), nullable=False, index=True),
             sa.Column("created_at", sa.String(40), nullable=False, index=True),
             sa.Column("package", sa.JSON, nullable=False),
             sa.Column("transfer_outcome", sa.String(16), nullable=False),
             sa.Column("updated_at", sa.String(40), nullable=False))
    sa.Table("deliveries", meta,
             sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("handoff_id", sa.String(64), sa.ForeignKey("handoffs.id"),
                       nullable=False, index=True),
             sa.Column("target_url", sa.String(500), nullable=False),
             sa.Column("attempt", sa.Integer, nullable=False),
             sa.Column("status_code", sa.Integer),
             sa.Column("error", sa.Text),
             sa.Column("at", sa.String(40), nullable=False),
             sa.Column("delivered", sa.Boolean, nullable=False))
    sa.Table("handoff_dispositions", meta,
             sa.Column("handoff_id", sa.String(64), sa.ForeignKey("handoffs.id"),
                       primary_key=True),
             sa.Column("disposition", sa.String(32), nullable=False),
             sa.Column("agent", sa.String(128), nullable=False),
             sa.Column("at", sa.String(40), nullable=False, index=True))
    return meta


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("fresh_postgres_db")
    return f"sqlite:///{tmp_path}/store.sqlite"


def _schema_diff(engine: sa.Engine, chain: str) -> list:
    """What Alembic's autogenerate finds between the chain's tables in the database and the
    store's models (the other chains' tables, one shared database, are left out)."""
    own = set(METADATA[chain].tables)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "include_name": lambda name, kind, _parent: kind != "table" or name in own})
        return compare_metadata(context, METADATA[chain])


def test_an_empty_database_comes_up_at_head_matching_the_models(db_url):
    engine = open_engine(db_url)
    for chain in CHAINS:
        assert current(engine, chain) is None
        upgrade(engine, chain)
        assert current(engine, chain) == head(chain)
        assert _schema_diff(engine, chain) == [], chain
        upgrade(engine, chain)  # again: nothing to do
    tables = set(sa.inspect(engine).get_table_names())
    assert {version_table(c) for c in CHAINS} <= tables
    assert "workers" in tables
    engine.dispose()


def _fill_previous(engine: sa.Engine, *, dispositions: bool = True) -> None:
    """Rows as the code before migrations wrote them (its ``create_all`` first)."""
    meta = previous_schema()
    if not dispositions:  # an older database still: the table came later
        meta.remove(meta.tables["handoff_dispositions"])
    meta.create_all(engine)
    crm_module.Base.metadata.create_all(engine)
    t = meta.tables
    with engine.begin() as db:
        for row in [
            {"id": "open", "transport": "sip", "started_at": 1000.0, "answered_at": 1001.0,
             "context": {"worker": "host-a:5060", "journey_id": "j1"}},
            {"id": "done", "transport": "sip", "started_at": 900.0, "ended_at": 950.0,
             "end_reason": "caller-hangup", "context": {"worker": "host-b:5060"}},
            {"id": "old", "transport": "webrtc", "started_at": 800.0, "context": {}}]:
            db.execute(t["calls"].insert(), row)
        db.execute(t["call_turns"].insert(), [
            {"call_id": "open", "turn": 1, "record": {"turn": 1, "speech_end_s": 3.0}}])
        package = {"handoff_id": "h1", "transfer": {"outcome": "connected"}}
        db.execute(t["handoffs"].insert(), [
            {"id": "h1", "call_id": "open", "created_at": "2026-01-01T00:00:00.000+00:00",
             "package": package, "transfer_outcome": "connected",
             "updated_at": "2026-01-01T00:01:00.000+00:00"}])
        db.execute(t["deliveries"].insert(), [
            {"handoff_id": "h1", "target_url": "http://crm.test/hook", "attempt": 1,
             "status_code": 200, "at": "2026-01-01T00:00:01.000+00:00", "delivered": True}])
        if dispositions:
            db.execute(t["handoff_dispositions"].insert(), [
                {"handoff_id": "h1", "disposition": "needed-human", "agent": "Dana",
                 "at": "2026-01-01T00:05:00.000+00:00"}])
        crm = crm_module.Base.metadata.tables
        db.execute(crm["customers"].insert(), [
            {"id": 1, "name": "Ada Lovelace", "phone": "+15550001234", "tier": "gold",
             "language": "en"}])
        db.execute(crm["orders"].insert(), [
            {"number": "123456", "customer_id": 1, "status": "shipped", "carrier": "UPS",
             "placed_on": date(2026, 1, 1), "eta": date(2026, 1, 5)}])
        db.execute(crm["cases"].insert(), [
            {"customer_id": 1, "subject": "Late", "status": "open", "notes": "",
             "created_at": datetime(2026, 1, 2, 9, 0)}])


@pytest.mark.parametrize("dispositions", [True, False], ids=["previous", "older"])
def test_a_database_of_the_previous_schema_is_upgraded_with_its_rows(db_url, tmp_path,
                                                                     dispositions):
    engine = open_engine(db_url)
    _fill_previous(engine, dispositions=dispositions)
    engine.dispose()

    # Opening the stores is the upgrade (ivr serve, ivr report ... open them).
    calls = CallStore(db_url, tmp_path / "spool", worker="host-a:5060")
    handoffs = HandoffStore(db_url, tmp_path / "handoff-spool", worker="host-a:5060")
    crm = CrmStore(db_url)
    for chain in CHAINS:
        assert current(calls.engine, chain) == head(chain)
        assert _schema_diff(calls.engine, chain) == [], chain

    # Calls: rows kept, the worker column filled from the context.
    assert {c["call_id"]: c["worker_id"] for c in calls.latest(10)} == {
        "open": "host-a:5060", "done": "host-b:5060", "old": None}
    assert calls.get("open")["turns"] == [{"turn": 1, "speech_end_s": 3.0}]
    assert calls.get("done")["end_reason"] == "caller-hangup"
    # ... and reconciling by the new column works on them.
    assert calls.close_lost_calls("host-a:5060") == ["open"]
    assert calls.get("open")["end_reason"] == WORKER_LOST

    # Handoffs: package, delivery and verdict kept; new rows carry their worker.
    got = handoffs.get("h1")
    assert got["transfer"]["outcome"] == "connected" and got["worker_id"] is None
    assert [d["status_code"] for d in got["deliveries"]] == [200]
    if dispositions:
        assert handoffs.disposition("h1")["agent"] == "Dana"
    handoffs.set_disposition("h1", "could-have-been-served", "Sam")  # the table is there
    assert handoffs.disposition("h1")["agent"] == "Sam"
    assert [c["handoff_id"] for c in handoffs.changed_since("2026")] == ["h1"]

    # CRM: untouched, and used as before.
    assert crm.customer_by_phone("+15550001234").name == "Ada Lovelace"
    assert crm.order("123456").carrier == "UPS"
    handoffs.close()
    for engine in (calls.engine, crm.engine):
        engine.dispose()


def test_stores_opened_at_once_migrate_a_new_database_once(db_url, tmp_path):
    """Workers of a pool start together on one database: one migrates, the others wait for
    it (advisory lock on PostgreSQL, flock on a SQLite file) and find it done."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_stores(i: int) -> None:
        try:
            barrier.wait()
            CallStore(db_url, tmp_path / f"s{i}", worker=f"w{i}").heartbeat()
            HandoffStore(db_url, tmp_path / f"h{i}", worker=f"w{i}").close()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_stores, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    engine = open_engine(db_url)
    with engine.connect() as db:
        versions = db.execute(sa.text(f"SELECT version_num FROM {version_table('calls')}"))
        assert [v for (v,) in versions] == [head("calls")]
        assert db.execute(sa.text("SELECT count(*) FROM workers")).scalar() == 4
    engine.dispose()


def test_spooled_records_of_the_previous_code_replay_after_the_upgrade(tmp_path):
    """A call spooled by the code before migrations (no worker column in the JSON) is
    replayed into the upgraded table with its worker."""
    url = f"sqlite:///{tmp_path}/ivr.sqlite"
    engine = open_engine(url)
    previous_schema().create_all(engine)
    engine.dispose()
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "call-s1-99.json").write_text(json.dumps({
        "id": "s1", "started_at": 5.0, "sip_call_id": None, "transport": "sip",
        "caller_number": None, "called_number": None, "source": None, "codec": None,
        "answered_at": None, "ended_at": 9.0, "end_reason": "caller-hangup",
        "context": {"worker": "host-a:5060"}}))
    store = CallStore(url, spool, worker="host-a:5060")
    assert store.replay_spool() == 1
    assert store.get("s1")["worker_id"] == "host-a:5060"


def test_ivr_db_upgrade_migrates_the_three_stores(fresh_postgres_db, tmp_path, monkeypatch,
                                                  capsys):
    """`ivr db upgrade` (a deploy step before the workers start): calls and handoffs on the
    shared PostgreSQL (a plain postgresql:// URL), the CRM in its own SQLite file."""
    from voice.app.cli import main

    shared = fresh_postgres_db.replace("postgresql+psycopg://", "postgresql://")
    monkeypatch.setenv("IVR_SERVER__STORE_URL", shared)
    monkeypatch.setenv("IVR_HANDOFF__DB_URL", shared)
    monkeypatch.setenv("IVR_CALL__CRM_URL", f"sqlite:///{tmp_path}/crm.sqlite")
    assert main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("calls: postgresql+psycopg://") and out[0].endswith(
        f"new -> {head('calls')}")
    assert out[1].endswith(f"new -> {head('handoffs')}")
    assert out[2].endswith(f"new -> {head('crm')}")
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(
        f"{head('calls')} -> {head('calls')}")
