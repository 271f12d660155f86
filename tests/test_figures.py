"""Contact-centre figures, the `ivr report` and the stored-record gauges, from real records in a
real SQLite file: a week of calls whose journeys are summarized from real call states (as the
call core does at the end of every call), and handoffs with the agents' dispositions."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from handoff.store import HandoffStore
from intents.dialogue.state import CallState, EscalationDecision, IntentRecord
from tests.test_desktop import alex_package
from voice.app import figures
from voice.app.callstore import WORKER_LOST, CallRecord, CallStore
from voice.app.cli import main
from voice.app.journey import summarize
from voice.app.metrics import IvrMetrics, StoredFigures

DAY = 86400.0
A, B, C, D = "+15550000001", "+15550000002", "+15550000003", "+15550000004"


def state(intents: list[tuple[str, str]], route: str | None = None,
          reason: str | None = None) -> CallState:
    """A call state as the turn manager leaves it: (label, decision) per turn, and the queue
    the caller was handed to with the reason."""
    s = CallState(call_id="x", menu_version="retail-billing-2026.11.1")
    for turn, (label, decision) in enumerate(intents, start=1):
        s.intents.append(IntentRecord(turn, "...", label, 0.9, [], decision, ""))
        s.escalations.append(EscalationDecision(turn, bool(route) and turn == len(intents),
                                                reason or "held", 0.0, {}, label, route))
    s.route, s.escalation_reason = route, reason
    return s


def turn(index: int, asr: float, total: float) -> dict:
    return {"turn": index, "caller_text": "...", "reply_text": "...", "total_ms": total,
            "stages": {"end_of_turn": 150.0, "asr": asr, "nlu": 20.0, "turn_manager": 5.0,
                       "tts_first_audio": 180.0, "transport": 60.0}}


def save(store: CallStore, call_id: str, started: float, number: str | None, *,
         journey: dict | None, end_reason: str, answered: bool = True, turns=(),
         length_s: float = 40.0) -> None:
    context = {"journey": journey} if journey else {}
    store.save_call(CallRecord(id=call_id, started_at=started, caller_number=number,
                               answered_at=started + 0.5 if answered else None,
                               ended_at=started + length_s, end_reason=end_reason,
                               context=context))
    for t in turns:
        store.save_turn(call_id, t)


def seed(calls: CallStore, handoffs: HandoffStore, now: float) -> None:
    """Six calls in the last week (one refused before answer) and one ten days ago."""
    save(calls, "c0-old", now - 10 * DAY, B, end_reason="caller-hangup",
         journey=summarize(state([("order_status", "route")]), "caller-hangup", ivr_s=30))
    save(calls, "c1-contained", now - 3 * DAY, A, end_reason="caller-hangup",
         journey=summarize(state([("order_status", "route"), ("out_of_scope", "menu")]),
                           "caller-hangup", ivr_s=40.0),
         turns=[turn(1, 200.0, 600.0), turn(2, 300.0, 800.0)])
    save(calls, "c2-billing", now - 1 * DAY, B, end_reason="caller-hangup",
         journey=summarize(state([("billing_question", "route")], "billing",
                                 "billing question is handled by the billing team"),
                           "caller-hangup", transfer_outcome="connected", ivr_s=20.0),
         turns=[turn(1, 250.0, 700.0)])
    save(calls, "c3-human", now - 2 * DAY, A, end_reason="caller-hangup",
         journey=summarize(state([("talk_to_human", "route")], "general",
                                 "caller asked for a human"),
                           "caller-hangup", transfer_outcome="abandoned", ivr_s=10.0))
    save(calls, "c4-abandoned", now - 0.5 * DAY, C, end_reason="caller-hangup",
         journey=summarize(state([("out_of_scope", "menu")]), "caller-hangup", ivr_s=15.0))
    save(calls, "c5-lost", now - 0.2 * DAY, D, end_reason=WORKER_LOST, journey=None)
    save(calls, "c6-refused", now - 0.1 * DAY, None, end_reason="refused", journey=None,
         answered=False)
    for handoff_id, verdict in (("h-billing", "needed-human"),
                                ("h-human", "could-have-been-served"), ("h-open", None)):
        handoffs.save(alex_package(handoff_id))
        if verdict:
            handoffs.set_disposition(handoff_id, verdict, "Dana")


@pytest.fixture
def stores(tmp_path: Path):
    calls_url = f"sqlite:///{tmp_path}/ivr.sqlite"
    handoffs_url = f"sqlite:///{tmp_path}/handoffs.sqlite"
    now = time.time()
    seed(CallStore(calls_url, tmp_path / "spool"), HandoffStore(handoffs_url, tmp_path / "hs"),
         now)
    return {"calls_url": calls_url, "handoffs_url": handoffs_url, "now": now, "tmp": tmp_path}


def reopened(stores) -> tuple[CallStore, HandoffStore]:
    """The stores as a restarted process opens them: nothing carried over in memory."""
    tmp = stores["tmp"]
    return (CallStore(stores["calls_url"], tmp / "spool"),
            HandoffStore(stores["handoffs_url"], tmp / "hs"))


def test_the_weeks_figures_from_the_stored_records(stores):
    calls, handoffs = reopened(stores)
    now = stores["now"]
    f = figures.load(calls, handoffs, now - 7 * DAY, now + 1)
    assert (f.calls, f.answered) == (6, 5)  # the refused call was never answered
    assert f.outcomes == {"contained": 1, "transferred": 2, "abandoned": 1, "failed": 1}
    assert f.containment_rate == pytest.approx(0.2)
    assert f.transfer_rate == pytest.approx(0.4)
    assert f.abandon_ivr_rate == pytest.approx(0.2)
    assert f.abandon_hold_rate == pytest.approx(0.5)  # c3 left on hold
    assert f.transfers_by_queue == {"billing": 1, "general": 1}
    assert f.transfers_by_reason == {"billing question is handled by the billing team": 1,
                                     "caller asked for a human": 1}
    # A called on day -3 and again on day -2; B's call ten days ago is outside the window.
    assert (f.repeat_calls, f.repeat_rate) == (1, pytest.approx(1 / 5))
    assert f.funnel["order_status"] == {"recognized": 1, "served": 1, "contained": 1}
    assert f.funnel["billing_question"] == {"recognized": 1, "served": 0, "contained": 0}
    assert f.funnel["talk_to_human"] == {"recognized": 1, "served": 0, "contained": 0}
    assert "out_of_scope" not in f.funnel
    assert f.latency_ms["asr"].count == 3 and f.latency_ms["asr"].p50 == 250.0
    assert f.latency_ms["total"].p95 == pytest.approx(790.0)
    assert list(f.latency_ms)[:2] == ["end_of_turn", "asr"]
    # IVR handle time: the journeys' ivr_s, and the lost call's length from its row.
    assert f.handle_time_s.count == 5 and f.handle_time_s.p50 == 20.0
    assert f.dispositions == {"needed-human": 1, "could-have-been-served": 1}
    assert f.escalation_accuracy == pytest.approx(0.5)
    assert sum(d["answered"] for d in f.by_day) == 5
    assert f.by_version == {"retail-billing-2026.11.1": {"contained": 1, "transferred": 2,
                                                          "abandoned": 1},
                            "unknown": {"failed": 1}}


def test_the_last_day_only(stores):
    calls, handoffs = reopened(stores)
    now = stores["now"]
    f = figures.load(calls, handoffs, now - DAY + 60, now + 1)
    assert f.outcomes == {"abandoned": 1, "failed": 1}
    assert f.repeat_calls == 0


def test_gauges_after_a_restart_come_from_the_records(stores):
    calls, handoffs = reopened(stores)
    metrics = IvrMetrics()  # a fresh process: every in-memory counter at zero
    metrics.registry.register(StoredFigures(
        lambda since, until: figures.load(calls, handoffs, since, until), window_s=7 * DAY))
    text = generate_latest(metrics.registry).decode()
    assert re.search(r"^ivr_containment_ratio 0\.2$", text, re.M)
    assert re.search(r'^ivr_transfers_by_queue\{queue="billing"\} 1\.0$', text, re.M)
    assert re.search(r'^ivr_intent_funnel_calls\{intent="order_status",step="contained"\} 1\.0$',
                     text, re.M)
    assert re.search(r"^ivr_escalation_accuracy_ratio 0\.5$", text, re.M)


def test_ivr_report_writes_html_with_plots(stores, monkeypatch, capsys):
    monkeypatch.setenv("IVR_HANDOFF__DB_URL", stores["handoffs_url"])
    monkeypatch.setenv("IVR_HANDOFF__SPOOL_DIR", str(stores["tmp"] / "hs"))
    out = stores["tmp"] / "report.html"
    assert main(["report", "--since", "7d", "--store", stores["calls_url"],
                 "--out", str(out)]) == 0
    assert "5 answered calls since 7d, containment 20.0 %, transfers 40.0 %" in \
        capsys.readouterr().out
    page = out.read_text()
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 5
    assert "http://" not in page and "https://" not in page  # stands alone
    assert "<td>order_status</td><td>1</td><td>1</td><td>1</td>" in page
    assert "<td>caller asked for a human</td><td>1</td>" in page


def test_ivr_report_refuses_a_period_it_cannot_read(capsys):
    assert main(["report", "--since", "last tuesday"]) == 2
    assert "give a positive duration like 7d" in capsys.readouterr().err


def test_a_disposition_is_stored_with_its_handoff_and_checked(stores):
    _, handoffs = reopened(stores)
    assert handoffs.disposition("h-billing")["disposition"] == "needed-human"
    assert handoffs.disposition("h-open") is None
    handoffs.set_disposition("h-billing", "could-have-been-served", "Sam")  # changed their mind
    assert handoffs.disposition("h-billing") | {"at": None} == {
        "disposition": "could-have-been-served", "agent": "Sam", "at": None}
    with pytest.raises(ValueError, match="disposition must be one of"):
        handoffs.set_disposition("h-open", "meh", "Dana")
    with pytest.raises(KeyError, match="no handoff h-nope"):
        handoffs.set_disposition("h-nope", "needed-human", "Dana")
