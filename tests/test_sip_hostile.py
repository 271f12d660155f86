"""Hostile SIP against a real `ivr serve` (issue 16): the crash corpus (RFC 4475's 49 torture
messages and hand-made malformed requests), a burst of refused INVITEs, idle TCP connections and
a seeded fuzz of mutated INVITEs and re-INVITEs. After each: the process is alive, a good call
still completes, and the call records read back intact.

Nothing is sent that could make the server talk to another machine: every message is rewritten
to the sender's loopback socket and checked by bench/sipkit.py's guard before it leaves (the
fast tests at the top hold the rewriter and the guard to that). Sources: 127.0.0.1 places the
good calls, 127.0.0.3 and 127.0.0.4 are allowed trunks that misbehave, 127.0.0.2 and 127.0.0.5
are refused (sip.allow_from).
"""

from __future__ import annotations

import copy
import json
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench import sipkit
from bench.harness import API_TOKEN, SIPP, IvrProcess, run_peer
from tests.sip.fuzz import TEST_COUNT, TEST_RATE, TEST_SEED, run_test_fuzz
from tests.sip.hostile import (
    ALLOWED,
    REFUSED,
    describe,
    expectation_met,
    load_corpus,
    responsive,
    run_corpus,
    wait_until,
)

CALLS = Path(__file__).parent / "fixtures" / "calls"
CORPUS = load_corpus()
MAX_CALLS = 2
CONFIG = {
    # One identity across restarts: the worker that comes back closes the rows its crash left.
    "server": {"worker_id": "hostile-worker"},
    "call": {"handler": "echo", "greeting": "Hello."},
    "sip": {"max_calls": MAX_CALLS, "max_silence_s": 60,
            "allow_from": ["127.0.0.1/32", "127.0.0.3/32", "127.0.0.4/32"]},
}

# ---------------------------------------------------------------------------------------------
# Fast: the corpus, the rewriter and the guard (no server)


def test_the_corpus_holds_rfc_4475_and_the_hand_made_requests():
    rfc = [e for e in CORPUS if e.file.startswith("rfc4475/")]
    handmade = [e for e in CORPUS if e.file.startswith("handmade/")]
    assert len(rfc) == 49 and len(handmade) >= 38
    assert {p.name for p in (Path(__file__).parent / "fixtures/sip/rfc4475").glob("*.dat")} == \
        {Path(e.file).name for e in rfc}
    issue_inputs = {"invite_nosdp_refused", "invite_nosdp_full", "sdp_c_host_300",
                    "sdp_c_host_250", "sdp_c_hostname", "from_bad_utf8", "callid_bad_utf8",
                    "content_length_beyond_body", "register", "options_require_foo",
                    "huge_header_udp", "header_without_colon", "bad_request_line",
                    "cseq_negative", "cseq_huge", "missing_call_id", "missing_via",
                    "content_length_multiple", "non_sdp_body"}
    assert issue_inputs <= {e.name for e in handmade}


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_every_corpus_message_is_rewritten_to_loopback_only(entry):
    host = REFUSED if entry.source == "refused" else ALLOWED
    out = sipkit.rewrite(entry.data, host, 40000, media_port=40002,
                         transport=entry.transport.upper())
    assert sipkit.unsafe_reasons(out) == []
    head, _, body = sipkit.split_message(out)
    original = sipkit.split_message(entry.data)
    lengths = sipkit.content_lengths(original[0])
    if len(lengths) == 1 and lengths[0] == len(original[2]):
        assert sipkit.content_lengths(head) == [len(body)]  # still right after rewriting
    else:
        assert sipkit.content_lengths(head) == lengths  # deliberately wrong: left wrong


@pytest.mark.parametrize("message", [
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nContact: <sip:x@8.8.8.8>\r\n\r\n",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nContact: <sip:x@evil.example.net:5060>\r\n\r\n",
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;maddr=255.255.255.255\r\n\r\n",
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1x:5060\r\n\r\n",
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP  / 2.0 /\r\n UDP 12a;branch=z9hG4bK1\r\n\r\n",
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nRecord-Route: <sip:proxy;lr>\r\n\r\n",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\nv=0\r\nc=IN IP4 10.1.2.3\r\nm=audio 4 RTP/AVP 0\r\n",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\nv=0\r\nc=IN IP4 127.1\r\n",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\nv=0\r\na=rtcp:9 IN IP4 media\r\n",
    b"INVITE sip:x@[2001:db8::1] SIP/2.0\r\n\r\n",
])
def test_the_guard_refuses_anything_that_could_leave_the_machine(message):
    with pytest.raises(sipkit.UnsafeMessage):
        sipkit.check_safe(message)


def test_the_guard_lets_loopback_and_unresolvable_hosts_through():
    ok = (b"INVITE sip:+1800@127.0.0.1:5060 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 127.0.0.3:4000;branch=z9hG4bK.x.y;rport\r\n"
          b"Call-ID: abc.example.com\r\nContact: <sip:a.b@127.0.0.3:4000>\r\n\r\n"
          b"v=0\r\nc=IN IP4 " + b"a" * 300 + b"\r\nc=IN IP4 localhost\r\nc=IN IP4 0.0.0.0\r\n")
    assert sipkit.unsafe_reasons(ok) == []


def test_the_fuzzer_is_seeded_and_never_names_another_machine():
    base = sipkit.invite_message(("127.0.0.1", 5060), "127.0.0.4", 4000, 4002,
                                 call_id=b"fuzz-base")
    first, second = sipkit.Mutator(7), sipkit.Mutator(7)
    drawn = [first.mutate(base) for _ in range(300)]
    assert drawn == [second.mutate(base) for _ in range(300)]
    assert len({m for m, _ in drawn}) > 250  # mutations, not one message over and over
    stats = sipkit.FuzzStats()
    safe = [sipkit._draw(sipkit.Mutator(11), base, stats) for _ in range(300)]
    assert all(sipkit.unsafe_reasons(m) == [] for m in safe)


# ---------------------------------------------------------------------------------------------
# Slow: a real `ivr serve`


class Server:
    """The `ivr serve` under test; when a message kills it, its log is kept and a new one is
    started on the same store (a crash fails the tests that caused it, not every later one)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.crash_logs: list[str] = []
        self.ivr = IvrProcess(workdir, copy.deepcopy(CONFIG)).start()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.ivr.sip_port

    def alive(self) -> bool:
        return self.ivr.proc.poll() is None

    def health(self) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.ivr.http_port}/healthz")
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read() or b"{}")
        except OSError:
            return {}

    def calls_active(self) -> int:
        return int(self.health().get("calls_active", 0))

    def legs_held(self) -> int:
        return int(self.health().get("sip", {}).get("legs_held", 0))

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.ivr.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()

    def api_calls(self, limit: int = 200) -> tuple[int, list | str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ivr.http_port}/api/calls?limit={limit}",
            headers={"Authorization": f"Bearer {API_TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=15) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def log_tail(self) -> str:
        log = self.ivr.log()
        assertions = [ln for ln in log.splitlines() if "Assertion" in ln or "assert" in ln]
        return "\n".join(assertions[-5:]) + "\n--- log tail ---\n" + log[-2500:]

    def restart(self) -> None:
        """A new server on the same store; a live one that stopped answering is killed."""
        if self.alive():
            self.ivr.proc.kill()
            self.ivr.proc.wait(10)
        self.crash_logs.append(self.log_tail())
        (self.workdir / f"ivr.crash{len(self.crash_logs)}.log").write_text(self.ivr.log())
        try:
            self.ivr._log.close()
        except Exception:  # noqa: BLE001
            pass
        self.ivr = IvrProcess(self.workdir, copy.deepcopy(CONFIG)).start()

    def ensure_alive(self) -> None:
        if not self.alive() or not responsive(self.address):
            self.restart()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if SIPP is None:
        pytest.skip("sipp missing: `make test` installs sip-tester")
    if not sipkit.loopback_aliases_work("127.0.0.2"):
        pytest.skip("sending from 127.0.0.2 needs Linux's whole-127/8 loopback")
    server = Server(tmp_path_factory.mktemp("hostile"))
    yield server
    if server.alive():
        assert server.ivr.stop() == 0, server.ivr.log()[-3000:]


@pytest.fixture(scope="module")
def corpus_run(server):
    run = run_corpus(CORPUS, server, max_calls=MAX_CALLS)
    print("\n" + describe(run))  # what each message got back (pytest -s shows it)
    for i, log in enumerate(server.crash_logs, 1):
        print(f"--- crash {i} ---\n{log[:1500]}")
    return run


def good_call(server: Server, caller: str) -> dict:
    """A pjsua2 caller speaks one sentence and hangs up; returns the IVR's record of it.

    It waits for PJSIP to let go of the hostile calls first: a leg whose 200 OK was never ACKed
    outlives its call until Timer H (32 s) and holds its place against ``max_calls`` till then.
    """
    server.ensure_alive()
    assert wait_until(lambda: server.legs_held() == 0, 60), \
        f"PJSIP still holds {server.legs_held()} call legs a minute after their calls"
    result = run_peer([server.ivr.uri, "--play", str(CALLS / "two_turns_8k.wav"),
                       "--wait", "1.0", "--tail", "3", "--caller-id", caller], timeout_s=90)
    assert result["connected"] and result["codec"].startswith("PCMU"), result
    assert result["reply_onsets_s"], "the IVR said nothing back"
    return server.ivr.wait_call(lambda c: c["caller_number"] == caller
                                and c["end_reason"] == "caller-hangup", timeout_s=30)


@pytest.mark.slow
@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_corpus_message(corpus_run, entry):
    sent = corpus_run.sent.get(entry.name)
    assert sent is not None, "not sent: the server died and could not be restarted"
    assert sent.outcome.skipped is None, sent.outcome.skipped
    assert sent.alive_after, (f"`ivr serve` died after {entry.name} ({entry.note}):\n"
                              f"{sent.crash_log}")
    assert sent.responsive_after, (f"after {entry.name} ({entry.note}) `ivr serve` is alive but "
                                   f"its SIP stack answers nothing:\n{sent.crash_log}")
    assert expectation_met(entry.expect, sent.outcome), (
        f"{entry.name} ({entry.note}): got {sent.outcome.codes or 'no answer'}, "
        f"expected {entry.expect}")


@pytest.mark.slow
def test_after_the_corpus_the_process_is_alive_and_a_good_call_completes(server, corpus_run):
    crashes = [f"{s.entry.name}: {s.crash_log.splitlines()[0] if s.crash_log else ''}"
               for s in corpus_run.crashes + corpus_run.hangs]
    assert not crashes and corpus_run.restarts == 0, "\n".join(crashes)
    assert server.alive()
    call = good_call(server, "+15550020001")
    assert call["turns"] and call["turns"][0]["reply_text"].startswith("You said")


@pytest.mark.slow
def test_after_the_corpus_the_call_records_read_back_intact(server, corpus_run):
    """/api/calls answers 200 with every record, invalid UTF-8 included (stored escaped); the
    row of a call whose Call-ID is not UTF-8 reached the store, not only the spool; every
    refusal is counted in Prometheus; no record is left open (rows of a worker that died are
    closed when the next one starts)."""
    server.ensure_alive()
    wait_until(lambda: server.calls_active() == 0, 20)
    status, calls = server.api_calls(500)
    assert status == 200, calls
    by_caller: dict[str, list] = {}
    for call in calls:
        assert call["call_id"] and call["started_at"]
        by_caller.setdefault(call["caller_number"], []).append(call)
    data = next(e for e in CORPUS if e.name == "from_bad_utf8").data
    number = re.search(rb"From:[^\r]*sip:(\+\d+)@", data).group(1).decode()
    assert number in by_caller, "no record of the call whose From display name has FF FE FD"
    assert "+19999999999" not in by_caller, \
        "a P-Asserted-Identity injected through U+2028 in a display name was believed"
    assert any((c["sip_call_id"] or "").startswith("hostile-callid-bad-utf8-") for c in calls), \
        "the call with a non-UTF-8 Call-ID has no row in the store"
    spool = server.workdir / "spool"
    assert not spool.exists() or not any(spool.iterdir()), sorted(spool.iterdir())
    refusals = sum(1 for s in corpus_run.sent.values()  # this process's counter only
                   if s.outcome.final in (403, 503) and b"INVITE" in s.entry.data[:8]
                   and s.epoch == corpus_run.restarts)
    assert sipkit.metric_total(server.metrics(), "ivr_sip_refused_total") >= refusals
    ended = [c for c in calls if c["ended_at"] is None]
    assert ended == [], f"{len(ended)} records left open"


@pytest.mark.slow
def test_a_burst_of_refused_invites_is_survived(server):
    """Finding 2: about 30 refused INVITEs back to back exhausted PJSIP's handle table
    (SIGABRT). 100 without SDP and 100 with, from a refused source, as fast as they go."""
    server.ensure_alive()
    agent = sipkit.Agent(server.address, "127.0.0.5")
    try:
        for i in range(200):
            message = sipkit.invite_message(server.address, agent.host, agent.port,
                                            agent.media_port, call_id=b"burst-%d" % i,
                                            caller=b"+1555003%04d" % i,
                                            sdp=b"" if i < 100 else None)
            agent.send(message)
        time.sleep(3.0)
        answered = sum(agent.codes.values())
    finally:
        agent.close()
    assert server.alive(), f"died in a burst of refused INVITEs:\n{server.log_tail()}"
    assert answered > 0  # refused (403) or, once the source is throttled, ignored
    good_call(server, "+15550020002")


@pytest.mark.slow
def test_idle_tcp_connections_do_not_lock_out_sip_over_tcp(server):
    """Finding 4: 62 idle TCP connections blocked every new SIP connection. 80 idle ones from
    one source; an OPTIONS over TCP from another source is still answered."""
    server.ensure_alive()
    idle = []
    try:
        for _ in range(80):
            try:
                idle.append(socket.create_connection(server.address, timeout=2,
                                                     source_address=("127.0.0.6", 0)))
            except OSError:
                break  # a per-source cap refusing more is the fix working
        time.sleep(0.5)
        agent = sipkit.Agent(server.address, "127.0.0.1")
        try:
            options = (b"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\n"
                       b"Via: SIP/2.0/TCP 127.0.0.1:%d;branch=%s\r\nMax-Forwards: 70\r\n"
                       b"From: <sip:monitor@127.0.0.1>;tag=tcp1\r\nTo: <sip:ivr@127.0.0.1>\r\n"
                       b"Call-ID: tcp-after-idle\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                       % (agent.port, sipkit.new_branch()))
            try:
                outcome = agent.tcp_exchange(options, wait_s=5.0)
            except OSError as why:
                pytest.fail(f"TCP connect refused with {len(idle)} idle connections open: {why}")
        finally:
            agent.close()
        assert server.alive(), server.log_tail()
        assert outcome.final == 200, f"OPTIONS over TCP got {outcome.codes} with " \
                                     f"{len(idle)} idle connections open"
    finally:
        for conn in idle:
            conn.close()


@pytest.mark.slow
def test_seeded_fuzz_of_invites_and_reinvites_is_survived(server):
    """2,000 mutated INVITEs and re-INVITEs (fixed seed) at a bounded rate; the process lives
    and a good call completes afterwards."""
    server.ensure_alive()
    stats = run_test_fuzz(server.address, alive=server.alive)
    assert server.alive(), (f"died during the fuzz (seed {TEST_SEED}, {stats.sent} of "
                            f"{TEST_COUNT} sent at {TEST_RATE}/s):\n{server.log_tail()}")
    assert stats.sent == TEST_COUNT and stats.reinvites > 0
    assert sum(stats.codes.values()) > 0  # the server answered the fuzz, not only dropped it
    wait_until(lambda: server.calls_active() == 0, 30)
    good_call(server, "+15550020003")
    status, calls = server.api_calls(100)
    assert status == 200, calls
