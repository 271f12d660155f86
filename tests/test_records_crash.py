"""Records survive a crash: a real `ivr serve` killed with SIGKILL while a call is up leaves its
row open; restarted on the same SQLite file it closes that row as `worker-lost` (and no row of
another worker), and writes what was left in its spool into the database."""

from __future__ import annotations

import json
import time

import pytest

from bench.harness import IvrProcess
from tests.sip.raw_uac import RawUac
from voice.app.callstore import CallRecord, CallStore

pytestmark = pytest.mark.slow

CONFIG = {"call": {"handler": "echo"}, "server": {"worker_id": "crash-test-worker"},
          "sip": {"max_silence_s": 60}}


def test_kill_9_mid_call_then_restart_leaves_no_row_open(tmp_path):
    ivr = IvrProcess(tmp_path, CONFIG).start()
    uac = RawUac(ivr.sip_port, caller=b"+15550000777")
    try:
        assert uac.invite() == 200
        deadline = time.time() + 20
        while time.time() < deadline and not [c for c in ivr.calls()
                                              if c["caller_number"] == "+15550000777"]:
            time.sleep(0.2)
        time.sleep(1.0)
        ivr.proc.kill()  # SIGKILL: nothing is finished, no BYE, no final record
        ivr.proc.wait(10)
    finally:
        uac.close()
    url = f"sqlite:///{tmp_path / 'ivr.sqlite'}"
    store = CallStore(url, tmp_path / "elsewhere")
    [lost] = [c for c in store.latest(10) if c["caller_number"] == "+15550000777"]
    assert lost["ended_at"] is None and lost["context"]["worker"] == "crash-test-worker"
    # Another worker shares the database and has a call up: not ours to close.
    CallStore(url, tmp_path / "elsewhere", worker="other-host:5060").save_call(
        CallRecord(id="other-worker-call", started_at=time.time(), caller_number="+15550000555"))
    # A record the dead process could only spool (its database was full, say).
    (tmp_path / "spool").mkdir(exist_ok=True)
    (tmp_path / "spool" / "call-spooledcall-4242.json").write_text(json.dumps({
        "id": "spooledcall", "started_at": time.time() - 60, "caller_number": "+15550000666",
        "ended_at": time.time() - 30, "end_reason": "caller-hangup",
        "context": {"worker": "crash-test-worker"}}))

    again = IvrProcess(tmp_path, CONFIG).start()  # the same store, spool and worker id
    try:
        calls = {c["call_id"]: c for c in again.calls(100)}
        row = calls[lost["call_id"]]
        assert row["end_reason"] == "worker-lost" and row["ended_at"], row
        assert row["ended_at"] >= row["started_at"]
        assert calls["other-worker-call"]["ended_at"] is None
        assert calls["spooledcall"]["end_reason"] == "caller-hangup"
        assert not list((tmp_path / "spool").glob("*.json"))
        open_rows = [c for c in calls.values() if c["ended_at"] is None
                     and c["context"].get("worker") == "crash-test-worker"]
        assert open_rows == []
        assert "closed as worker-lost" in again.log()
    finally:
        assert again.stop() == 0
