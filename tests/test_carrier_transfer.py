"""Warm transfer of a Twilio stream caller to a SIP agent, bridged through the IVR.

A caller over the media stream (bench.twilio_client) asks for a person; `ivr serve` dials a
pjsua2 agent over SIP, briefs it, then carries the audio between the WebSocket and the agent's
PJSIP leg. Whisper checks that the agent heard the briefing and the caller, and that the caller
heard the agent.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bench.harness import SIPP, IvrProcess, free_port, peer_result, run_peer
from bench.twilio_client import place_call
from tests.test_carrier_stream import heard_text
from tests.test_warm_transfer import heard, spoken

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sip-tester missing (`make test`)")]

AUTH_TOKEN = "test-twilio-auth-token"


def test_stream_caller_is_briefed_to_a_sip_agent_and_bridged(tmp_path_factory, tmp_path):
    from handoff.crm import CrmStore, seed
    from voice.audio import read_audio

    workdir = tmp_path_factory.mktemp("carrier-transfer")
    crm_url = f"sqlite:///{workdir / 'crm.sqlite'}"
    seed(CrmStore(crm_url), customers=50)
    agent_port = free_port()
    ivr = IvrProcess(workdir, {
        "call": {"handler": "manager", "crm_url": crm_url, "max_silence_s": 60},
        "carrier": {"twilio_auth_token": AUTH_TOKEN},
        "handoff": {"agent_uris": [f"sip:agent@127.0.0.1:{agent_port}"], "ring_timeout_s": 6,
                    "db_url": f"sqlite:///{workdir / 'handoffs.sqlite'}",
                    "spool_dir": str(workdir / "handoff-spool")}}).start()
    try:
        dana = run_peer(["--answer", "--listen-port", str(agent_port), "--play",
                         str(spoken([("Hello, this is Dana from customer care. How can I help?",
                                      1.0)], tmp_path / "dana.wav")),
                         "--wait", "18", "--record", str(tmp_path / "agent.wav"),
                         "--timeout", "80"], background=True)
        caller = read_audio(spoken([("I'd like to speak to a person, please.", 26.0),
                                    ("Thanks. I was charged twice for my order.", 6.0)],
                                   tmp_path / "caller.wav")).samples

        async def call():
            stream = await place_call(f"http://127.0.0.1:{ivr.http_port}", AUTH_TOKEN,
                                      caller="+15550000001")
            await stream.play(np.zeros(8000, np.int16))
            await stream.play(caller)
            await stream.stop()
            await stream.wait_closed(15)
            return stream

        stream = asyncio.run(call())
        agent = peer_result(dana, timeout_s=60)
        record = ivr.wait_call(lambda c: c["sip_call_id"] == stream.call_sid, timeout_s=30)
    finally:
        ivr.stop()
    assert agent["connected"], agent
    assert record["transport"] == "twilio"
    assert record["end_reason"] == "transferred", record["end_reason"]
    briefing = heard(tmp_path / "agent.wav", 0, 17)
    assert "transfer" in briefing, briefing
    agent_heard = heard(tmp_path / "agent.wav", 17, agent["seconds"])
    assert "charged" in agent_heard, agent_heard
    audio = stream.heard()  # longer than Whisper's 30 s window: heard in overlapping parts
    caller_heard = " | ".join(heard_text(audio[i:i + 12 * 8000])
                              for i in range(0, len(audio), 6 * 8000))
    assert "dana" in caller_heard, caller_heard
    assert "transfer from the voice assistant" not in caller_heard  # the briefing is the agent's
