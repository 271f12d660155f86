"""The call store keeps every record: in the database, or as a JSON file when it cannot write,
replayed once it can; text that is not UTF-8 is stored escaped; rows a dead worker left open
are closed as worker-lost at its next start, and only its own."""

import json
import sqlite3

from voice.app.callstore import WORKER_LOST, CallRecord, CallStore


def test_calls_and_turns_are_listed_newest_first_in_the_simulate_shape(tmp_path):
    store = CallStore(f"sqlite:///{tmp_path}/ivr.sqlite", tmp_path / "spool")
    store.save_call(CallRecord(id="a", started_at=1000.0, caller_number="+15550000001"))
    store.save_call(CallRecord(id="b", started_at=2000.0, end_reason="caller-hangup"))
    store.save_turn("a", {"turn": 1, "caller_text": "hello", "reply_text": "You said: hello"})
    calls = store.latest(10)
    assert [c["call_id"] for c in calls] == ["b", "a"]
    assert calls[1]["turns"] == [{"turn": 1, "caller_text": "hello",
                                  "reply_text": "You said: hello"}]


def read_only_spool(tmp_path) -> str:
    """A call and its turn written while the database is read-only: both spooled."""
    path = tmp_path / "ivr.sqlite"
    CallStore(f"sqlite:///{path}", tmp_path / "spool")  # create the tables
    read_only = CallStore(f"sqlite:///file:{path}?mode=ro&uri=true", tmp_path / "spool")
    read_only.save_call(CallRecord(id="c", started_at=3000.0, end_reason="shutdown"))
    read_only.save_turn("c", {"turn": 1, "caller_text": "still kept"})
    return f"sqlite:///{path}"


def test_a_store_that_cannot_write_spools_the_record_as_json(tmp_path):
    read_only_spool(tmp_path)
    spooled = sorted((tmp_path / "spool").glob("*.json"))
    assert len(spooled) == 2
    kept = [json.loads(p.read_text()) for p in spooled]
    assert {"id": "c", "end_reason": "shutdown"}.items() <= kept[0].items() or \
        {"id": "c", "end_reason": "shutdown"}.items() <= kept[1].items()
    assert any(k.get("caller_text") == "still kept" for k in kept)


def test_spooled_records_are_replayed_once_the_database_is_writable(tmp_path):
    url = read_only_spool(tmp_path)
    store = CallStore(url, tmp_path / "spool")
    assert store.replay_spool() == 2
    assert list((tmp_path / "spool").glob("*.json")) == []
    [call] = store.latest(5)
    assert call["end_reason"] == "shutdown"
    assert call["turns"] == [{"turn": 1, "caller_text": "still kept"}]


def test_the_next_successful_write_replays_the_spool(tmp_path):
    url = read_only_spool(tmp_path)
    store = CallStore(url, tmp_path / "spool")
    store.save_call(CallRecord(id="d", started_at=4000.0))
    assert list((tmp_path / "spool").glob("*.json")) == []
    assert {c["call_id"] for c in store.latest(5)} == {"c", "d"}


def test_a_spooled_state_never_overwrites_a_newer_one(tmp_path):
    """A call spooled at its start and written at its end: the replay must not reopen it."""
    path = tmp_path / "ivr.sqlite"
    store = CallStore(f"sqlite:///{path}", tmp_path / "spool")
    read_only = CallStore(f"sqlite:///file:{path}?mode=ro&uri=true", tmp_path / "spool")
    read_only.save_call(CallRecord(id="e", started_at=5000.0))  # the start: spooled
    assert len(list((tmp_path / "spool").glob("call-e-*.json"))) == 1
    store.save_call(CallRecord(id="e", started_at=5000.0, ended_at=5060.0,
                               end_reason="caller-hangup"))
    assert store.replay_spool() == 0
    [call] = store.latest(5)
    assert call["end_reason"] == "caller-hangup" and call["ended_at"]


def test_an_unreadable_spool_file_is_set_aside_not_in_the_way(tmp_path):
    url = read_only_spool(tmp_path)
    (tmp_path / "spool" / "call-broken-1.json").write_text("{not json")
    store = CallStore(url, tmp_path / "spool")
    assert store.replay_spool() == 2
    assert [p.name for p in (tmp_path / "spool").iterdir()] == ["call-broken-1.json.bad"]


BAD = "\udcff\udcfe\udcfd"  # bytes FF FE FD as PJSIP hands them to Python (surrogateescape)


def test_text_that_is_not_utf8_is_stored_escaped_and_returned_as_json(tmp_path):
    store = CallStore(f"sqlite:///{tmp_path}/ivr.sqlite", tmp_path / "spool")
    store.save_call(CallRecord(id="f", started_at=6000.0, sip_call_id=f"call{BAD}@host",
                               caller_number=f"+1555{BAD}",
                               context={"caller_name": f"Alex {BAD}", "x_headers": {
                                   f"X-{BAD}": BAD}}))
    store.save_turn("f", {"turn": 1, "caller_text": f"hi {BAD}", "total_ms": float("nan")})
    assert not (tmp_path / "spool").exists()  # into the database, not only the spool
    [call] = store.latest(5)
    json.dumps(call, ensure_ascii=False, allow_nan=False).encode("utf-8")  # what a response does
    assert call["sip_call_id"] == "call\\xff\\xfe\\xfd@host"
    assert call["caller_number"] == "+1555\\xff\\xfe\\xfd"
    assert call["context"]["caller_name"] == "Alex \\xff\\xfe\\xfd"
    assert call["context"]["x_headers"] == {"X-\\xff\\xfe\\xfd": "\\xff\\xfe\\xfd"}
    assert call["turns"] == [{"turn": 1, "caller_text": "hi \\xff\\xfe\\xfd", "total_ms": None}]


def test_rows_stored_with_surrogates_before_the_fix_are_returned_escaped(tmp_path):
    path = tmp_path / "ivr.sqlite"
    store = CallStore(f"sqlite:///{path}", tmp_path / "spool")
    with sqlite3.connect(path) as db:  # what the old code left: JSON with \udcff escapes
        db.execute("INSERT INTO calls (id, transport, started_at, context) VALUES "
                   "('g', 'sip', 7000.0, ?)", (json.dumps({"caller_name": BAD}),))
    [call] = store.latest(5)
    assert call["context"]["caller_name"] == "\\xff\\xfe\\xfd"
    json.dumps(call, ensure_ascii=False).encode("utf-8")


def test_open_rows_of_this_worker_are_closed_as_worker_lost_and_no_others(tmp_path):
    url = f"sqlite:///{tmp_path}/ivr.sqlite"
    mine = CallStore(url, tmp_path / "spool", worker="host-a:5060")
    other = CallStore(url, tmp_path / "spool", worker="host-b:5060")
    mine.save_call(CallRecord(id="up", started_at=1000.0, answered_at=1001.0))
    mine.save_turn("up", {"turn": 1, "speech_start_s": 2.0, "speech_end_s": 4.5})
    mine.save_turn("up", {"turn": 2, "speech_start_s": 7.0, "speech_end_s": 9.0})
    mine.save_call(CallRecord(id="ringing", started_at=2000.0))
    mine.save_call(CallRecord(id="done", started_at=1500.0, ended_at=1600.0,
                              end_reason="caller-hangup"))
    other.save_call(CallRecord(id="theirs", started_at=1000.0))
    legacy = CallStore(url, tmp_path / "spool")  # before workers were recorded: no worker
    legacy.save_call(CallRecord(id="old", started_at=100.0))
    legacy.save_call(CallRecord(id="recent", started_at=2500.0))

    closed = mine.close_lost_calls("host-a:5060", unowned_before=2000.0)
    assert sorted(closed) == ["old", "ringing", "up"]
    calls = {c["call_id"]: c for c in mine.latest(10)}
    assert calls["up"]["end_reason"] == WORKER_LOST
    assert calls["up"]["ended_at"].startswith("1970-01-01T00:16:50.000")  # 1001 + 9 s
    assert calls["ringing"]["end_reason"] == WORKER_LOST
    assert calls["ringing"]["ended_at"] == calls["ringing"]["started_at"]
    assert calls["done"]["end_reason"] == "caller-hangup"
    assert calls["theirs"]["ended_at"] is None  # another worker's call may be live
    assert calls["recent"]["ended_at"] is None  # unowned, but could still be up
    assert calls["up"]["context"]["worker"] == "host-a:5060"
    assert mine.close_lost_calls("host-a:5060") == []
