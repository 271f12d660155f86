"""Browser calls end to end: Debian's Chromium, headless, calls `ivr serve` on /call.

The fake microphone plays a real recording once; the page records what it hears and measures
each reply's latency on its own audio clock. Whisper checks the replies answer the caller; the
call records are read back from /api/calls. A browser killed mid-call (nothing closed) ends the
call on the media timeout, and is recorded; a second caller while the only place is taken is
refused with 503.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from bench.harness import API_TOKEN, SIPP, IvrProcess, free_port, peer_result, run_peer
from bench.webrtc_caller import CHROMIUM, call_page, fake_capture, page_state, place_call
from voice.audio import resample

CALLS = Path(__file__).parent / "fixtures" / "calls"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not "
                                 "installed (make test installs it)")]


@pytest.fixture(scope="module")
def ivr(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ivr-webrtc")
    server = IvrProcess(workdir, {
        "call": {"handler": "echo"},
        "sip": {"max_calls": 1},
        # Chromium's fake microphone is a headset: none of our voice comes back in it. With
        # echo cancellation on, Chrome removes the caller's voice while our reply plays (until
        # its canceller learns there is no echo), and the barge-in test's caller goes unheard.
        "webrtc": {"media_timeout_s": 3.0, "connect_timeout_s": 10.0,
                   "echo_cancellation": False},
    }).start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((CALLS / "calls.json").read_text())


def heard(engines, pcm: np.ndarray, rate: int, start_s: float = 0.0,
          end_s: float | None = None) -> str:
    part = pcm[int(start_s * rate):None if end_s is None else int(end_s * rate)]
    return engines.transcriber.transcribe(resample(part, rate, 16000), 16000).text.lower()


def replies(pcm: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """Where the page heard something: (start, end) seconds of each stretch of sound that has
    at least a second of quiet around it (20 ms blocks)."""
    block = rate // 50
    n = len(pcm) // block
    loud = np.abs(pcm[:n * block].reshape(n, block).astype(np.int32)).max(axis=1) > 300
    spans: list[tuple[float, float]] = []
    start, quiet = None, 0
    for i, on in enumerate(loud):
        if on:
            start, quiet = (i if start is None else start), 0
        elif start is not None:
            quiet += 1
            if quiet > 50:
                spans.append((start * 0.02, (i - quiet + 1) * 0.02))
                start = None
    if start is not None:
        spans.append((start * 0.02, n * 0.02))
    return spans


def spaced(call: dict, path: Path, gap_s: float) -> Path:
    """The manifest's recording with its utterances ``gap_s`` apart (an 8 kHz WAV at ``path``)."""
    from voice.audio import read_audio, write_wav

    audio = read_audio(CALLS / call["file"])
    rate = audio.sample_rate
    parts = []
    for u in call["utterances"]:
        parts += [audio.samples[int((u["start_s"] - 0.3) * rate):int((u["end_s"] + 0.3) * rate)],
                  np.zeros(int(gap_s * rate), np.int16)]
    write_wav(path, np.concatenate(parts[:-1]), rate)
    return path


def words(text: str) -> set[str]:
    return {w.strip(".,!?:;'\"-") for w in text.lower().split() if len(w) > 3}


async def test_a_browser_caller_is_answered_and_the_call_is_recorded(ivr, tmp_path, engines,
                                                                     manifest):
    # The two sentences 6 s apart: on a loaded machine a late reply would otherwise still be
    # playing when the second one starts, and be talked over (tested below, on purpose).
    capture = fake_capture(spaced(manifest["two_turns_8k"], tmp_path / "two-8k.wav", 6.0),
                           tmp_path / "caller.wav")
    result = await place_call(ivr.http_port, API_TOKEN, capture, turns=2, timeout_s=50)
    assert result.status == "in-call", result.status_text
    # The page showed both sides of both turns and measured both replies where it heard them.
    assert [t["reply_text"].startswith("You said") for t in result.turns] == [True, True], \
        result.turns
    assert len(result.latencies_ms) == 2 and all(ms > 0 for ms in result.latencies_ms)
    # What the browser heard answers what the caller said (the echo handler repeats it).
    spans = replies(result.recording, result.rate)
    texts = [heard(engines, result.recording, result.rate, a - 0.1, b + 0.2) for a, b in spans]
    # Both replies repeat their sentence: most of the caller's words came back to the browser.
    # (A loaded machine may pause a reply mid-way while it is synthesized: spans are joined.)
    joined = " ".join(texts)
    said = set().union(*(words(u["text"]) for u in manifest["two_turns_8k"]["utterances"]))
    assert joined.count("you said") == 2, (texts, result.turns)
    assert len(said & words(joined)) >= len(said) / 2, (texts, result.turns)
    call = ivr.wait_call(lambda c: c["call_id"] == result.call_id)
    assert call["transport"] == "webrtc" and call["codec"] == "opus/48000/2"
    assert call["end_reason"] == "caller-hangup" and call["context"]["webrtc_end"] == "hangup"
    assert len(call["turns"]) == 2 and call["turns"][1]["caller_text"]
    assert call["context"]["frames"]["frames_in"] > 0 and call["context"]["frames"]["frames_out"]


async def test_the_caller_talking_over_a_reply_stops_it_at_the_browser(ivr, tmp_path, engines,
                                                                       manifest):
    from voice.audio import read_audio, write_wav

    # The barge-in recording with its second sentence moved 5 s after the first: in real time on
    # a loaded machine the reply to a 6.5 s sentence takes a while to start, and it must be
    # playing when the caller talks over it.
    first, second = manifest["barge_in_8k"]["utterances"]
    audio = read_audio(CALLS / "barge_in_8k.wav")
    rate = audio.sample_rate
    one = audio.samples[:int((first["end_s"] + 0.3) * rate)]
    two = audio.samples[int((second["start_s"] - 0.3) * rate):int((second["end_s"] + 0.3) * rate)]
    gap = np.zeros(int(4.4 * rate), np.int16)
    write_wav(tmp_path / "barge-8k.wav", np.concatenate([one, gap, two]), rate)
    capture = fake_capture(tmp_path / "barge-8k.wav", tmp_path / "caller.wav")
    result = await place_call(ivr.http_port, API_TOKEN, capture, turns=2, timeout_s=50)
    call = ivr.wait_call(lambda c: c["call_id"] == result.call_id)
    cut, over = call["turns"][0], call["turns"][1]
    assert cut["reply_interrupted"] and over["barge_in"], call["turns"]
    # The whole sentence said over the reply was heard, not just what followed the cut.
    said = second["text"].lower().replace("-", " ").split()
    got = over["caller_text"].lower().replace("-", " ").strip(".").split()
    assert sum(w in got for w in said) >= len(said) / 2, over["caller_text"]
    # On the page's clock: our reply to the long first sentence was playing in the seconds
    # before the caller spoke again (the page's own level threshold; the IVR's VAD may hear the
    # soft start of the word sooner), then went quiet, and the caller never heard the end of the
    # sentence it was repeating. (On a busy machine the caller may speak in the pause between
    # "You said:" and the long sentence, still being synthesized: that is talking over it too.)
    onsets = [t for t in result.mic_onsets if t > result.mic_onsets[0] + first["end_s"]
              - first["start_s"]]
    assert onsets, result.mic_onsets
    rate = result.rate
    at = int((onsets[0] - result.remote_start) * rate)
    before = np.abs(result.recording[max(0, at - 3 * rate):at].astype(np.int32))
    assert before.max() > 1000, "no reply was playing when the caller spoke again"
    # quiet well before the reply's natural end (its next 6 s), and before the answer to the
    # interruption (which needs the 3 s sentence to end first)
    later = np.abs(result.recording[at + 3 * rate // 2:at + 3 * rate].astype(np.int32))
    assert later.max() < 300, "our reply went on after the caller talked over it"
    heard_first = heard(engines, result.recording, rate, max(0.0, at / rate - 6), at / rate + 1)
    assert "you said" in heard_first and "for them" not in heard_first, heard_first


async def offer_sdp() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_a_vanished_browser_ends_its_call_and_a_caller_beyond_the_limit_gets_503(
        ivr, tmp_path):
    capture = fake_capture(CALLS / "two_turns_8k.wav", tmp_path / "caller.wav", tail_s=30)
    base = f"http://127.0.0.1:{ivr.http_port}"
    async with call_page(ivr.http_port, API_TOKEN, capture) as (page, browser):
        await page.click("#call")
        await page.wait_for_function("ivrCall.status === 'in-call'", timeout=20000)
        call_id = (await page_state(page)).call_id
        # The only place is taken: another caller is refused, clearly.
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            grant = await client.post("/api/webrtc/token",
                                      headers={"Authorization": f"Bearer {API_TOKEN}"})
            refused = await client.post("/api/webrtc/offer",
                                        json={"type": "offer", "sdp": await offer_sdp()},
                                        headers={"Authorization":
                                                 f"Bearer {grant.json()['token']}"})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        browser.kill()  # no BYE, no DTLS close: the peer is simply gone
    call = await asyncio.to_thread(ivr.wait_call, lambda c: c["call_id"] == call_id, 20)
    assert call["context"]["webrtc_end"] == "media-timeout", call
    assert call["answered_at"] and call["ended_at"] and call["transport"] == "webrtc"


@pytest.mark.skipif(SIPP is None, reason="sip-tester missing (`make test`)")
async def test_a_browser_caller_is_briefed_to_a_sip_agent_and_bridged(tmp_path_factory,
                                                                      tmp_path, engines):
    """Asking for a person: the IVR dials a pjsua2 agent over SIP, briefs it, then carries the
    audio between the browser's WebRTC line and the agent's PJSIP leg itself."""
    from handoff.crm import CrmStore, seed
    from tests.test_warm_transfer import heard as agent_heard
    from tests.test_warm_transfer import spoken

    workdir = tmp_path_factory.mktemp("webrtc-transfer")
    crm_url = f"sqlite:///{workdir / 'crm.sqlite'}"
    seed(CrmStore(crm_url), customers=50)
    agent_port = free_port()
    ivr = IvrProcess(workdir, {
        "webrtc": {"echo_cancellation": False},  # a headset caller, as in ``ivr`` above
        "call": {"handler": "manager", "crm_url": crm_url, "max_silence_s": 60},
        "handoff": {"agent_uris": [f"sip:agent@127.0.0.1:{agent_port}"], "ring_timeout_s": 6,
                    "db_url": f"sqlite:///{workdir / 'handoffs.sqlite'}",
                    "spool_dir": str(workdir / "handoff-spool")}}).start()
    try:
        dana = run_peer(["--answer", "--listen-port", str(agent_port), "--play",
                         str(spoken([("Hello, this is Dana from customer care. How can I help?",
                                      1.0)], tmp_path / "dana.wav")),
                         "--wait", "18", "--record", str(tmp_path / "agent.wav"),
                         "--timeout", "80"], background=True)
        caller = spoken([("I'd like to speak to a person, please.", 26.0),
                         ("Thanks. I was charged twice for my order.", 6.0)],
                        tmp_path / "caller-8k.wav")
        capture = fake_capture(caller, tmp_path / "caller.wav", lead_s=1.5, tail_s=10)
        async with call_page(ivr.http_port, API_TOKEN, capture) as (page, _browser):
            await page.click("#call")
            await page.wait_for_function("ivrCall.status === 'in-call'", timeout=20000)
            await asyncio.sleep(44)
            result = await page_state(page)
            await page.click("#call")
            await asyncio.sleep(1)
        agent = await asyncio.to_thread(peer_result, dana, 60)
        record = await asyncio.to_thread(ivr.wait_call,
                                         lambda c: c["call_id"] == result.call_id, 30)
    finally:
        ivr.stop()
    assert agent["connected"], agent
    assert record["transport"] == "webrtc" and record["end_reason"] == "transferred", record
    briefing = agent_heard(tmp_path / "agent.wav", 0, 17)
    assert "transfer" in briefing, briefing
    said = agent_heard(tmp_path / "agent.wav", 17, agent["seconds"])
    assert "charged" in said, said  # the agent hears the browser caller
    caller_heard = " ".join(heard(engines, result.recording, result.rate, a - 0.1, b + 0.2)
                            for a, b in replies(result.recording, result.rate))
    assert "dana" in caller_heard, caller_heard  # and the caller hears the agent
