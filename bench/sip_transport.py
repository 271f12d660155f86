"""What the SIP transport costs by itself, apart from the pipeline.

    .venv/bin/python -m bench.sip_transport

- copying one 20 ms frame out of pjsua2: ``bytes(ByteVector)`` against our one-copy read
  (voice/sip/pjbuffer.py);
- the loopback round trip through two pjsua2 endpoints (PCMU, jitter buffers, conference
  bridges): a peer plays clicks, the other sends back what it receives;
- the leading near-silence Piper puts before a sentence, which voice.engines trims;
- how many call legs the pjsua2 wheel allows in one process, whatever ``UaConfig.maxCalls``.

Writes bench/results/sip_transport.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import numpy as np

from bench.latency import machine

RESULTS = ROOT / "bench" / "results"
ECHO_PORT = 5910


def frame_copy_us() -> dict[str, float]:
    import pjsua2 as pj

    from voice.transports.sip.pjbuffer import _fast, _slow

    vector = pj.ByteVector(bytes(320))
    return {name: timeit.timeit(lambda f=f: f(vector), number=500) / 500 * 1e6
            for name, f in (("bytes(ByteVector)", _slow), ("one-copy read", _fast))}


def echo_peer() -> None:
    """Run as a child: answer one call and send back each frame as it arrives."""
    import pjsua2 as pj

    from voice.transports.sip import caller

    class Echo(caller._Port):
        def onFrameRequested(self, frame):
            with self.lock:
                pcm = self.received[-1] if self.received else self.silence
                self.sent.append(pcm)
                self.tick += 1
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            frame.buf = pj.ByteVector(pcm)
            frame.size = len(pcm)

    peer = caller.Peer(port=ECHO_PORT)
    peer.register_account(f"sip:echo@127.0.0.1:{ECHO_PORT}")
    peer.port = Echo()
    peer.port.create()
    end = time.time() + 20
    while time.time() < end and peer.state.disconnected_at is None:
        peer.pump(10)
    peer.close()


def round_trip_ms(clicks: int = 8) -> list[float]:
    from voice.transports.sip import caller

    child = subprocess.Popen([sys.executable, "-m", "bench.sip_transport", "--echo-peer"], cwd=ROOT)
    time.sleep(2.0)
    peer = caller.Peer()
    peer.register_account("sip:bench@127.0.0.1")
    peer.dial(f"sip:echo@127.0.0.1:{ECHO_PORT}", {})
    audio = np.zeros(caller.RATE * (clicks + 2), np.int16)
    for k in range(clicks):
        start = caller.RATE * (k + 1)
        audio[start:start + caller.FRAME] = 12000
    played, end = False, time.time() + 20
    try:
        while time.time() < end:
            peer.pump(10)
            if peer.state.media_at and not played and time.time() - peer.state.media_at > 1:
                peer.port.play(audio)
                played, end = True, time.time() + len(audio) / caller.RATE + 1
        sent, received = peer.audio()
    finally:
        peer.close()
        child.wait(30)
    heard = caller.audible_onsets(received)
    return [round((next(r for r in heard if r > s) - s) * 1000, 1)
            for s in caller.audible_onsets(sent) if any(r > s for r in heard)]


def piper_lead_quiet_ms() -> dict[str, float]:
    from voice.app.settings import IvrSettings
    from voice.engines import shared_engines, trim_leading_quiet

    engines = shared_engines(IvrSettings())
    rate = engines.voice.config.sample_rate
    out = {}
    for text in ("You said: he was not an ill-disposed young man.", "I'll connect you with a "
                 "colleague now.", "Sure. What's your order number?"):
        chunks = [c.audio_int16_array for c in engines.voice.synthesize(text, engines.syn_config)]
        audio = np.concatenate(chunks)
        out[text] = round((len(audio) - len(trim_leading_quiet(audio, rate))) / rate * 1000, 1)
    return out


def call_slots(asked: int = 8) -> int:
    """Legs one process gets with UaConfig.maxCalls = ``asked`` (calls to a port nobody
    answers, so they stay in progress)."""
    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.maxCalls = asked
    cfg.logConfig.level = cfg.logConfig.consoleLevel = 0
    ep.libInit(cfg)
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, pj.TransportConfig())
    ep.audDevManager().setNullDev()
    ep.libStart()
    account = pj.Account()
    account_cfg = pj.AccountConfig()
    account_cfg.idUri = "sip:slots@127.0.0.1"
    account.create(account_cfg)
    calls = []
    for _ in range(asked):
        call = pj.Call(account)
        try:
            call.makeCall("sip:nobody@127.0.0.1:9", pj.CallOpParam(True))
        except pj.Error:
            break
        calls.append(call)
    made = len(calls)
    ep.hangupAllCalls()
    for _ in range(50):
        ep.libHandleEvents(10)
    from voice.transports.sip.endpoint import destroy

    for call in calls:
        destroy(call)
    account.shutdown()
    destroy(account)
    ep.libDestroy()
    return made


def main() -> int:
    if "--echo-peer" in sys.argv:
        echo_peer()
        return 0
    copy = frame_copy_us()
    trips = round_trip_ms()
    lead = piper_lead_quiet_ms()
    slots = {asked: subprocess.run(
        [sys.executable, "-m", "bench.sip_transport", "--slots", str(asked)],
        cwd=ROOT, capture_output=True, text=True).stdout.split()[-1] for asked in (4, 8, 31)}
    lines = ["# SIP transport costs", "", f"Machine: {machine()}. No GPU.", "",
             f"Command: `.venv/bin/python -m bench.sip_transport` "
             f"(run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
             "| what | figure |", "|---|---|"]
    for name, us in copy.items():
        lines.append(f"| copy one 20 ms frame (320 bytes) out of pjsua2, {name} | {us:.1f} us |")
    lines.append(f"| loopback round trip, pjsua2 -> pjsua2 echo -> pjsua2 (PCMU, default jitter "
                 f"buffers), {len(trips)} clicks | median {np.median(trips):.0f} ms "
                 f"(all: {trips}) |")
    for text, ms in lead.items():
        lines.append(f"| Piper leading near-silence trimmed, \"{text}\" | {ms} ms |")
    for asked, made in slots.items():
        lines.append(f"| call legs one process gets with UaConfig.maxCalls = {asked} | {made} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sip_transport.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({"copy_us": copy, "round_trip_ms": trips, "lead_quiet_ms": lead,
                      "slots": slots}))
    return 0


if __name__ == "__main__":
    if "--slots" in sys.argv:
        print(call_slots(int(sys.argv[sys.argv.index("--slots") + 1])))
        sys.exit(0)
    sys.exit(main())
