"""The call store keeps every record: in the database, or as a JSON file when it cannot write."""

import json

from voice.callstore import CallRecord, CallStore


def test_calls_and_turns_are_listed_newest_first_in_the_simulate_shape(tmp_path):
    store = CallStore(f"sqlite:///{tmp_path}/ivr.sqlite", tmp_path / "spool")
    store.save_call(CallRecord(id="a", started_at=1000.0, caller_number="+15550000001"))
    store.save_call(CallRecord(id="b", started_at=2000.0, end_reason="caller-hangup"))
    store.save_turn("a", {"turn": 1, "caller_text": "hello", "reply_text": "You said: hello"})
    calls = store.latest(10)
    assert [c["call_id"] for c in calls] == ["b", "a"]
    assert calls[1]["turns"] == [{"turn": 1, "caller_text": "hello",
                                  "reply_text": "You said: hello"}]


def test_a_store_that_cannot_write_spools_the_record_as_json(tmp_path):
    path = tmp_path / "ivr.sqlite"
    CallStore(f"sqlite:///{path}", tmp_path / "spool")  # create the tables
    read_only = CallStore(f"sqlite:///file:{path}?mode=ro&uri=true", tmp_path / "spool")
    read_only.save_call(CallRecord(id="c", started_at=3000.0, end_reason="shutdown"))
    read_only.save_turn("c", {"turn": 1, "caller_text": "still kept"})
    spooled = sorted((tmp_path / "spool").glob("*.json"))
    assert len(spooled) == 2
    kept = [json.loads(p.read_text()) for p in spooled]
    assert {"id": "c", "end_reason": "shutdown"}.items() <= kept[0].items() or \
        {"id": "c", "end_reason": "shutdown"}.items() <= kept[1].items()
    assert any(k.get("caller_text") == "still kept" for k in kept)
