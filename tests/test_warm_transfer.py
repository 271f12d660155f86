"""Warm transfer over real SIP: a pjsua2 caller asks for a human, pjsua2 agents answer (or not).

One `ivr serve` (turn manager, seeded CRM, two agents in its queue, a signed webhook to a real
receiver on loopback) serves the module. The agents are second pjsua2 endpoints that record
what they hear; what each side heard is checked with Whisper, and the outcome with the IVR's
handoff API, its call API and the CRM.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI, Request

from bench.harness import SIPP, IvrProcess, free_port, peer_result, run_peer
from tests.loopback import serve

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sip-tester missing (`make test`)")]

SECRET = "whsec-test"
TOKEN = "tok-dana"


def spoken(lines: list[tuple[str, float]], path: Path) -> Path:
    """Piper sentences through the G.711 phone channel, each followed by a pause."""
    from tests.test_turn_manager import synthetic_caller
    from voice.audio import write_wav

    write_wav(path, synthetic_caller(lines).samples, 8000)
    return path


def heard(recording: Path, start_s: float, end_s: float, channel: int = 1) -> str:
    """What Whisper hears in ``channel`` of a peer's stereo recording (1: what it received)."""
    import soundfile

    from voice.app.settings import IvrSettings
    from voice.audio import resample
    from voice.engines import shared_engines

    audio, rate = soundfile.read(recording, dtype="int16")
    part = audio[int(start_s * rate):int(end_s * rate), channel]
    if np.abs(part).max(initial=0) < 300:
        return ""  # never feed Whisper silence
    wide = resample(part, rate, 16000)
    engines = shared_engines(IvrSettings())
    return engines.transcriber.transcribe(wide, 16000).text.lower()


@pytest.fixture(scope="module")
def webhook_inbox():
    from standardwebhooks import Webhook, WebhookVerificationError

    from handoff.webhooks import webhook_signing_secret

    verifier = Webhook(webhook_signing_secret(SECRET))

    received: list[dict] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request):
        body = await request.body()
        try:
            verifier.verify(body, dict(request.headers))
            ok = True
        except WebhookVerificationError:
            ok = False
        received.append({"valid": ok, "package": json.loads(body)})
        return {"ok": ok}

    with serve(app) as url:
        yield url, received


@pytest.fixture(scope="module")
def agents():
    return free_port(), free_port()


@pytest.fixture(scope="module")
def ivr(tmp_path_factory, webhook_inbox, agents):
    from handoff.crm import CrmStore, seed

    workdir = tmp_path_factory.mktemp("transfer")
    crm_url = f"sqlite:///{workdir / 'crm.sqlite'}"
    seed(CrmStore(crm_url), customers=200)
    server = IvrProcess(workdir, {
        "call": {"handler": "manager", "crm_url": crm_url},
        "sip": {"max_silence_s": 60},
        "handoff": {"agent_uris": [f"sip:agent@127.0.0.1:{p}" for p in agents],
                    "ring_timeout_s": 4, "db_url": f"sqlite:///{workdir / 'handoffs.sqlite'}",
                    "spool_dir": str(workdir / "handoff-spool"),
                    "webhook_urls": [f"{webhook_inbox[0]}/hook"], "webhook_secret": SECRET,
                    "desktop_tokens": [f"Dana:{TOKEN}"]},
    }).start()
    server.crm = CrmStore(crm_url)
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def handoffs(ivr) -> list[dict]:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{ivr.http_port}/api/handoffs?limit=20",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def handoff_of(ivr, caller_number: str, outcome: str, timeout_s: float = 20) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for package in handoffs(ivr):
            if package["call"]["caller_number"] == caller_number and \
                    package["transfer"]["outcome"] == outcome:
                return package
        time.sleep(0.3)
    raise AssertionError(f"no {outcome} handoff for {caller_number}: {handoffs(ivr)[:2]}")


def agent(port: int, *args: str):
    return run_peer(["--answer", "--listen-port", str(port), *args], background=True)


def test_the_caller_is_held_the_agent_is_briefed_then_they_talk(ivr, agents, tmp_path,
                                                                 webhook_inbox):
    """The first agent is busy; the second hears the briefing, then caller and agent talk."""
    busy = agent(agents[0], "--answer-code", "486", "--timeout", "60")
    dana = agent(agents[1], "--play", str(spoken([("Hello, this is Dana from customer care. "
                                                   "How can I help?", 1.0)],
                                                  tmp_path / "dana.wav")),
                 "--wait", "18", "--record", str(tmp_path / "agent.wav"), "--timeout", "80")
    time.sleep(1.5)
    caller = run_peer(["sip:+18005550100@" + ivr.address, "--play",
                       str(spoken([("I'd like to speak to a person, please.", 26.0),
                                   ("Thanks. I was charged twice for my order.", 4.0)],
                                  tmp_path / "caller.wav")),
                       "--wait", "2", "--tail", "8", "--record", str(tmp_path / "caller.wav.rec"),
                       "--timeout", "90"], timeout_s=120)
    assert caller["connected"]
    busy_result, dana_result = peer_result(busy), peer_result(dana)
    assert busy_result["calls_seen"] == 1 and busy_result["status"] == 486

    package = handoff_of(ivr, "+15550000001", "connected")
    handoff_id = package["handoff_id"]
    assert [a["result"] for a in package["transfer"]["attempts"]] == ["busy", "connected"]
    assert package["customer"]["name"] == "Alex Morgan" and package["customer"]["tier"] == "gold"
    assert package["escalation"]["reason"] == "caller asked for a human"
    assert "Alex Morgan" in package["summary"]
    # The INVITE to the agent carried the handoff id, in both headers.
    headers = dana_result["headers"]
    assert headers["X-IVR-Handoff-Id"] == handoff_id
    assert bytes.fromhex(headers["User-to-User"].split(";")[0]).decode() == handoff_id

    # The agent heard the briefing before anyone else; the caller did not hear it.
    onsets = dana_result["heard_onsets_s"]
    briefing = heard(tmp_path / "agent.wav", 0, 16)
    assert "transfer" in briefing and ("morgan" in briefing or "gold" in briefing), briefing
    on_hold = heard(tmp_path / "caller.wav.rec", 8, 22)
    assert "transfer" not in on_hold and "gold" not in on_hold, on_hold
    # Then they hear each other: the caller hears Dana, Dana hears the caller's second sentence.
    caller_heard = heard(tmp_path / "caller.wav.rec", 24, 40)
    assert "dana" in caller_heard, caller_heard
    agent_heard = heard(tmp_path / "agent.wav", 17, dana_result["seconds"])
    assert "charged twice" in agent_heard or "charged" in agent_heard, (agent_heard, onsets)

    call = ivr.wait_call(lambda c: c["context"].get("handoff_id") == handoff_id)
    assert call["end_reason"] == "transferred"
    assert call["context"]["after_call"]["disposition"] == "transferred-connected"
    case = ivr.crm.case(call["context"]["after_call"]["case_id"])
    assert "transferred-connected" in case.notes and handoff_id in case.notes

    deadline = time.time() + 10
    while time.time() < deadline and not any(
            r["package"]["handoff_id"] == handoff_id for r in webhook_inbox[1]):
        time.sleep(0.2)
    pushed = [r for r in webhook_inbox[1] if r["package"]["handoff_id"] == handoff_id]
    assert pushed and all(r["valid"] for r in pushed)
    stored = next(p for p in handoffs(ivr) if p["handoff_id"] == handoff_id)
    assert any(d["delivered"] for d in stored["deliveries"])


def test_no_agent_answers_and_the_caller_takes_a_callback(ivr, agents, tmp_path):
    ringing = [agent(p, "--answer-code", "180", "--timeout", "60") for p in agents]
    time.sleep(1.5)
    from handoff.crm import Callback

    callbacks_before = ivr.crm.count(Callback)
    caller = run_peer(["sip:+18005550100@" + ivr.address, "--play",
                       str(spoken([("I want to talk to someone.", 32.0),
                                   ("Please call me back.", 6.0)], tmp_path / "caller.wav")),
                       "--wait", "2", "--tail", "10", "--caller-id", "+15550000001",
                       "--timeout", "90"], timeout_s=120)
    assert caller["connected"] and caller["ended_by"] == "ivr"
    for proc in ringing:
        result = peer_result(proc)
        assert result["calls_seen"] == 1 and result["status"] == 487  # CANCELled at the timeout
    package = handoff_of(ivr, "+15550000001", "callback")
    assert [a["result"] for a in package["transfer"]["attempts"]] == ["no-answer", "no-answer"]
    call = ivr.wait_call(lambda c: c["context"].get("handoff_id") == package["handoff_id"])
    assert call["context"]["after_call"]["disposition"] == "callback-scheduled"
    assert ivr.crm.count(Callback) == callbacks_before + 1


def test_the_caller_hangs_up_while_the_agent_rings(ivr, agents, tmp_path):
    ringing = agent(agents[0], "--answer-code", "180", "--timeout", "40")
    time.sleep(1.5)
    caller = run_peer(["sip:+18005550100@" + ivr.address, "--play",
                       str(spoken([("Can I speak to an agent?", 1.0)], tmp_path / "caller.wav")),
                       "--wait", "2", "--hangup-after", "10", "--caller-id", "+15550000002",
                       "--timeout", "60"], timeout_s=90)
    assert caller["connected"] and caller["ended_by"] == "caller"
    result = peer_result(ringing)
    assert result["calls_seen"] == 1 and result["status"] == 487  # the agent leg was cancelled
    package = handoff_of(ivr, "+15550000002", "abandoned")
    call = ivr.wait_call(lambda c: c["context"].get("handoff_id") == package["handoff_id"])
    assert call["end_reason"] == "caller-hangup"
    assert call["context"]["after_call"]["disposition"] == "abandoned"


def test_the_agent_hangs_up_and_the_caller_leg_is_ended(ivr, agents, tmp_path):
    hangs_up = agent(agents[0], "--hangup-after", "20", "--timeout", "60")
    time.sleep(1.5)
    caller = run_peer(["sip:+18005550100@" + ivr.address, "--play",
                       str(spoken([("I need a representative.", 1.0)], tmp_path / "caller.wav")),
                       "--wait", "2", "--stay", "--caller-id", "+15550000003",
                       "--timeout", "70"], timeout_s=100)
    assert caller["connected"] and caller["ended_by"] == "ivr"
    assert peer_result(hangs_up)["connected"]
    package = handoff_of(ivr, "+15550000003", "connected")
    call = ivr.wait_call(lambda c: c["context"].get("handoff_id") == package["handoff_id"])
    assert call["end_reason"] == "transferred-agent-hangup"


@pytest.fixture(scope="module")
def ivr_refer(tmp_path_factory, agents):
    from handoff.crm import CrmStore, seed

    workdir = tmp_path_factory.mktemp("refer")
    crm_url = f"sqlite:///{workdir / 'crm.sqlite'}"
    seed(CrmStore(crm_url), customers=50)
    server = IvrProcess(workdir, {
        "call": {"handler": "manager", "crm_url": crm_url},
        "handoff": {"agent_uris": [f"sip:agent@127.0.0.1:{agents[0]}"], "ring_timeout_s": 4,
                    "transfer_mode": "refer",
                    "db_url": f"sqlite:///{workdir / 'handoffs.sqlite'}",
                    "spool_dir": str(workdir / "handoff-spool"),
                    "desktop_tokens": [f"Dana:{TOKEN}"]},
    }).start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def test_refer_with_replaces_takes_the_ivr_out_of_the_media_path(ivr_refer, agents, tmp_path):
    """transfer_mode refer: after the briefing the caller's side is REFERred to the agent with
    Replaces; caller and agent then talk on their own dialog and the IVR's legs end."""
    dana = agent(agents[0], "--play", str(spoken([("Hello, this is Dana. How can I help?", 1.0)],
                                                  tmp_path / "dana.wav")),
                 "--wait", "18", "--record", str(tmp_path / "agent.wav"), "--timeout", "70")
    time.sleep(1.5)
    caller = run_peer(["sip:+18005550100@" + ivr_refer.address, "--play",
                       str(spoken([("Can I talk to a real person?", 1.0)],
                                  tmp_path / "caller.wav")),
                       "--wait", "2", "--hangup-after", "34", "--stay",
                       "--record", str(tmp_path / "caller.wav.rec"), "--timeout", "60"],
                      timeout_s=90)
    dana_result = peer_result(dana)
    assert caller["transferred"] and dana_result["transferred"], (caller, dana_result)
    package = handoff_of(ivr_refer, "+15550000001", "connected")
    call = ivr_refer.wait_call(lambda c: c["context"].get("handoff_id") == package["handoff_id"])
    assert call["end_reason"] == "transferred"
    # The IVR left well before the caller hung up: the rest was caller <-> agent directly.
    ended = call["ended_at"]
    assert "dana" in heard(tmp_path / "caller.wav.rec", 22, 34), "the caller did not hear Dana"
    assert ended
