"""The handoff store on a real SQLite file: packages, transfer outcomes, deliveries, the spool
that keeps a write when the database fails, the HTTP API and the after-call case note."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_handoff_package import TRANSCRIPT, order_call

from handoff.aftercall import (
    Disposition,
    after_call_from_package,
    disposition_for,
    write_after_call,
)
from handoff.api import handoff_router
from handoff.build import build_package
from handoff.crm import DEMO_PHONE, CrmStore, seed
from handoff.store import HandoffStore


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> CrmStore:
    store = CrmStore(f"sqlite:///{tmp_path_factory.mktemp('crm')}/crm.sqlite")
    seed(store, customers=50)
    return store


@pytest.fixture
def store(tmp_path) -> HandoffStore:
    store = HandoffStore(f"sqlite:///{tmp_path}/handoffs.sqlite", spool_dir=tmp_path / "spool")
    yield store
    store.close()


def test_save_follow_the_transfer_and_list_the_latest(store, crm):
    first = store.save(build_package(order_call(crm), crm, TRANSCRIPT))
    second = store.save(build_package(order_call(crm), crm, []))
    store.update_transfer(second, "no-answer", agent_uri="sip:alice@pbx.test",
                          attempt_result="no-answer")
    store.update_transfer(second, "connected", agent_uri="sip:bob@pbx.test",
                          attempt_result="connected")
    store.record_delivery(second, "http://crm.test/hook", 1, status_code=500, error="HTTP 500")
    store.record_delivery(second, "http://crm.test/hook", 2, status_code=200, delivered=True)
    latest = store.latest(10)
    assert [p["handoff_id"] for p in latest] == [second, first]
    transfer = latest[0]["transfer"]
    assert transfer["outcome"] == "connected" and transfer["agent_uri"] == "sip:bob@pbx.test"
    assert [(a["agent_uri"], a["result"]) for a in transfer["attempts"]] == [
        ("sip:alice@pbx.test", "no-answer"), ("sip:bob@pbx.test", "connected")]
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in latest[0]["deliveries"]] \
        == [(1, 500, False), (2, 200, True)]
    assert latest[1]["deliveries"] == [] and latest[1]["transfer"]["outcome"] == "pending"
    assert store.latest(1)[0]["handoff_id"] == second
    with pytest.raises(ValueError, match="transfer outcome must be one of"):
        store.update_transfer(second, "answered")
    with pytest.raises(KeyError):
        store.update_transfer("no-such-handoff", "connected")


def test_a_read_only_database_spools_the_package(tmp_path, crm, caplog_loguru):
    path = tmp_path / "handoffs.sqlite"
    HandoffStore(f"sqlite:///{path}", spool_dir=tmp_path / "spool").close()  # tables exist
    read_only = HandoffStore(f"sqlite:///file:{path}?mode=ro&uri=true",
                             spool_dir=tmp_path / "spool")
    handoff_id = read_only.save(build_package(order_call(crm), crm, []))
    assert len(read_only.spooled()) == 1 and read_only.get(handoff_id) is None
    assert "readonly" in caplog_loguru.getvalue().replace(" ", "").lower()
    read_only.close()
    writable = HandoffStore(f"sqlite:///{path}", spool_dir=tmp_path / "spool")
    # Opening a store replays its spool (ivr serve's start-up).
    assert writable.spooled() == [] and writable.recover() == 0
    assert writable.get(handoff_id)["handoff_id"] == handoff_id
    writable.close()


def test_a_database_that_cannot_be_written_loses_nothing(tmp_path, crm, caplog_loguru):
    """The database path is a directory (what a full or broken volume looks like to SQLite):
    every write lands in the spool; once the database works, recover() replays them in order."""
    db = tmp_path / "db" / "handoffs.sqlite"
    db.mkdir(parents=True)
    store = HandoffStore(f"sqlite:///{db}", spool_dir=tmp_path / "spool")
    package = build_package(order_call(crm), crm, TRANSCRIPT)
    handoff_id = store.save(package)
    store.update_transfer(handoff_id, "busy", agent_uri="sip:alice@pbx.test",
                          attempt_result="busy")
    store.record_delivery(handoff_id, "http://crm.test/hook", 1, status_code=200,
                          delivered=True)
    spooled = store.spooled()
    assert [p.name.split("-")[2] for p in spooled] == ["package", "transfer", "delivery"]
    assert "handoff store write failed" in caplog_loguru.getvalue()
    assert "[card ending 1234]" in spooled[0].read_text()
    assert "one one one" not in spooled[0].read_text()
    store.close()
    db.rmdir()  # the volume is back
    store = HandoffStore(f"sqlite:///{db}", spool_dir=tmp_path / "spool")
    assert store.spooled() == []  # replayed when it opened, in order
    [saved] = store.latest(5)
    assert saved["handoff_id"] == handoff_id and saved["transfer"]["outcome"] == "busy"
    assert saved["deliveries"][0]["delivered"] is True
    store.close()


def test_the_api_lists_packages_with_transfer_and_deliveries(store, crm):
    handoff_id = store.save(build_package(order_call(crm), crm, TRANSCRIPT))
    store.update_transfer(handoff_id, "abandoned")
    store.record_delivery(handoff_id, "http://crm.test/hook", 1, error="ConnectError")
    app = FastAPI()
    app.include_router(handoff_router(store, tokens=["agent-token"]))
    client = TestClient(app)
    assert client.get("/api/handoffs").status_code == 401
    auth = {"Authorization": "Bearer agent-token"}
    [listed] = client.get("/api/handoffs?limit=5", headers=auth).json()
    assert listed["transfer"]["outcome"] == "abandoned"
    assert listed["deliveries"][0]["error"] == "ConnectError"
    assert listed["summary"].startswith("Alex Morgan (gold tier)")
    assert client.get(f"/api/handoffs/{handoff_id}", headers=auth).json()["handoff_id"] == \
        handoff_id
    assert client.get("/api/handoffs/nope", headers=auth).status_code == 404
    assert client.get("/api/handoffs?limit=0", headers=auth).status_code == 422
    with pytest.raises(ValueError):  # no open mode: packages hold personal data
        handoff_router(store, tokens=[])


def test_packages_with_text_that_is_not_utf8_are_returned_escaped(store, crm):
    """A caller name from a SIP header with bytes FF FE FD reaches the package as surrogates;
    the API returns it escaped instead of failing with a 500."""
    package = build_package(order_call(crm), crm, TRANSCRIPT)
    package = package.to_dict() if hasattr(package, "to_dict") else package
    package["call"]["sip_call_id"] = "x\udcff\udcfe\udcfd@h"
    handoff_id = store.save(package)
    app = FastAPI()
    app.include_router(handoff_router(store, tokens=["agent-token"]))
    answer = TestClient(app).get("/api/handoffs", headers={"Authorization": "Bearer agent-token"})
    assert answer.status_code == 200
    [listed] = answer.json()
    assert listed["handoff_id"] == handoff_id
    assert listed["call"]["sip_call_id"] == "x\\xff\\xfe\\xfd@h"


def test_a_store_replays_its_spool_when_it_opens(tmp_path, crm):
    db = tmp_path / "handoffs.sqlite"
    db.mkdir()  # a database that cannot be opened: every write is spooled
    broken = HandoffStore(f"sqlite:///{db}", spool_dir=tmp_path / "spool")
    handoff_id = broken.save(build_package(order_call(crm), crm, TRANSCRIPT))
    broken.update_transfer(handoff_id, "connected", agent_uri="sip:bob@pbx.test",
                           attempt_result="connected")
    broken.close()
    assert len(list((tmp_path / "spool").glob("*.json"))) == 2
    db.rmdir()
    reopened = HandoffStore(f"sqlite:///{db}", spool_dir=tmp_path / "spool")
    assert reopened.spooled() == []
    assert reopened.get(handoff_id)["transfer"]["outcome"] == "connected"
    reopened.close()


def test_after_call_work_writes_the_disposition_and_summary_into_a_case(store, crm):
    package = build_package(order_call(crm), crm, TRANSCRIPT)
    handoff_id = store.save(package)
    store.update_transfer(handoff_id, "connected", agent_uri="sip:bob@pbx.test",
                          attempt_result="connected")
    record = after_call_from_package(crm, store.get(handoff_id))
    assert record.opened and record.disposition == Disposition.TRANSFERRED_CONNECTED
    case = crm.case(record.case_id)
    assert case.subject == "Phone call: order status" and case.status == "open"
    assert f"call call-1: transferred-connected (handoff {handoff_id})" in case.notes
    assert "Order 456712 looked up: shipped with UPS" in case.notes
    # The same caller calls back and serves themselves: the open case gets the note and closes.
    customer = crm.customer_by_phone(DEMO_PHONE)
    again = write_after_call(crm, call_id="call-9", customer_id=customer.id,
                             disposition=disposition_for(None), summary="Balance read out.")
    assert again.case_id == record.case_id and not again.opened
    case = crm.case(record.case_id)
    assert case.status == "closed" and case.notes.count("\n") == 1
    assert case.notes.endswith("call call-9: self-served. Balance read out.")
    assert crm.customer_card(customer.id).open_cases == []
    assert disposition_for("abandoned") == Disposition.ABANDONED
    assert disposition_for("callback") == Disposition.CALLBACK_SCHEDULED
