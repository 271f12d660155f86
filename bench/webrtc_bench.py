"""WebRTC from Chromium beside SIP in the same run: what the caller waits on each transport.

    .venv/bin/python -m bench.webrtc_bench [--rounds 1] [--screenshot docs/webrtc-call.png]

One `ivr serve` (echo handler, default models) answers both kinds of caller, one call at a
time, alternating on the same recordings (real speakers): a pjsua2 caller over SIP/RTP (G.711
on loopback, as in bench.sip_bench), and Debian's Chromium, headless, on `/call`, whose fake
microphone plays the recording (48 kHz) through Opus over WebRTC on loopback.

Latency is taken at the caller the same way for both: from the end of each utterance (calls.json)
to the first audible sample of the reply as the caller got it. The SIP caller reports its reply
onsets itself; for the browser, the page records what it sent and heard on one audio clock, the
recording is located in what was sent by cross-correlation, and the onsets of what was heard
are found with the SIP caller's own detector (``audible_onsets``). The page's own figure (its
level-based end of speech to the reply's first audible block, as shown on /call) is reported
beside it. Raw p50 and p95, nothing excluded. Writes bench/results/webrtc.md, webrtc.png and
webrtc.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import API_TOKEN, IvrProcess, run_peer
from bench.latency import machine
from bench.sip_bench import BENCH_CALLS, CALLS, call_latencies, percentile
from bench.webrtc_caller import fake_capture, place_call, reply_onsets_in_file
from voice.audio import read_audio

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WAIT_S = 1.0  # the SIP caller starts speaking this long after media is up
LEAD_S = 2.0  # the browser's recording starts this long after the microphone opens
TAIL_S = 4.0


def sip_call(ivr: IvrProcess, name: str, i: int) -> dict:
    result = run_peer([ivr.uri, "--play", str(CALLS / f"{name}.wav"), "--wait", str(WAIT_S),
                       "--tail", str(TAIL_S), "--caller-id", f"+1555600{i:04d}",
                       "--timeout", "120"], timeout_s=180)
    return {"reply_onsets_s": result.get("reply_onsets_s") or [],
            "connected": result.get("connected", False)}


async def browser_call(ivr: IvrProcess, name: str, workdir: Path, utterances: list[dict],
                       screenshot: Path | None = None) -> dict:
    source = CALLS / f"{name}.wav"
    capture = fake_capture(source, workdir / f"{name}-48k.wav", lead_s=LEAD_S, tail_s=30)
    seconds = LEAD_S + utterances[-1]["end_s"] + TAIL_S  # as long as the SIP caller stays
    call = await place_call(ivr.http_port, API_TOKEN, capture, turns=len(utterances),
                            timeout_s=90, min_s=seconds, screenshot=screenshot)
    speech = read_audio(source)
    return {"reply_onsets_s": reply_onsets_in_file(call, speech.samples, speech.sample_rate),
            "connected": call.status == "in-call", "page_latencies_ms": call.latencies_ms,
            "call_id": call.call_id, "status": call.status_text}


def run(rounds: int, screenshot: Path | None) -> dict:
    manifest = json.loads((CALLS / "calls.json").read_text())
    out = {t: {"waits_ms": [], "unanswered": 0, "calls": 0, "ids": []}
           for t in ("sip", "webrtc")}
    out["webrtc"]["page_ms"] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ivr = IvrProcess(workdir, {"call": {"handler": "echo"}}).start()
        try:
            sip_call(ivr, "two_turns_8k", 9999)  # warm-up, not counted
            asyncio.run(browser_call(ivr, "two_turns_8k", workdir,
                                     manifest["two_turns_8k"]["utterances"], screenshot))
            i = 0
            for _ in range(rounds):
                for name in BENCH_CALLS:
                    utterances = manifest[name]["utterances"]
                    for transport in ("sip", "webrtc"):
                        i += 1
                        if transport == "sip":
                            result = sip_call(ivr, name, i)
                            out["sip"]["ids"].append(f"+1555600{i:04d}")
                        else:
                            result = asyncio.run(browser_call(ivr, name, workdir, utterances))
                            out["webrtc"]["ids"].append(result["call_id"])
                            out["webrtc"]["page_ms"] += result["page_latencies_ms"]
                        waits, missing = call_latencies(result, utterances)
                        row = out[transport]
                        row["waits_ms"] += waits
                        row["unanswered"] += missing
                        row["calls"] += 1
                        print(json.dumps({"transport": transport, "call": name,
                                          "waits_ms": [round(w) for w in waits],
                                          "page_ms": result.get("page_latencies_ms"),
                                          "unanswered": missing}), flush=True)
            time.sleep(2)
            calls = ivr.calls(limit=200)
        finally:
            ivr.stop()
    for transport in ("sip", "webrtc"):
        row = out[transport]
        key = "caller_number" if transport == "sip" else "call_id"
        mine = [c for c in calls if c.get(key) in row["ids"]]
        row["recorded"] = len(mine)
        row["recorded_complete"] = sum(
            1 for c in mine if c["transport"] == transport and c["codec"] and c["turns"]
            and c["ended_at"])
        row["codecs"] = sorted({c["codec"] or "-" for c in mine})
        row["turns_recorded"] = sum(len(c["turns"]) for c in mine)
        inside = [t["total_ms"] for c in mine for t in c["turns"] if t.get("total_ms")]
        row["ivr_p50_ms"] = percentile(inside, 0.5)  # the IVR's own end of speech -> reply out
        row["late_frames"] = sum(c["context"].get("frames", {}).get("frames_late", 0)
                                 for c in mine)
        row["p50_ms"] = percentile(row["waits_ms"], 0.5)
        row["p95_ms"] = percentile(row["waits_ms"], 0.95)
    page = out["webrtc"]["page_ms"]
    out["webrtc"]["page_p50_ms"] = percentile(page, 0.5)
    out["webrtc"]["page_p95_ms"] = percentile(page, 0.95)
    return out


def write_report(data: dict, rounds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sip, web = data["sip"], data["webrtc"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, waits, style in (("SIP (pjsua2, G.711/RTP)", sip["waits_ms"], "o-"),
                               ("WebRTC (Chromium, Opus)", web["waits_ms"], "s--"),
                               ("WebRTC, the page's own figure", web["page_ms"], "^:")):
        waits = sorted(waits)
        if waits:
            ax.plot(waits, np.arange(1, len(waits) + 1) / len(waits), style, label=name)
    ax.set_xlabel("caller-side voice-to-voice (ms)")
    ax.set_ylabel("fraction of turns")
    ax.set_title("SIP and WebRTC, same server, same run (echo handler, loopback)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "webrtc.png", dpi=120)

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    both = sip["p50_ms"] is not None and web["p50_ms"] is not None
    diff = web["p50_ms"] - sip["p50_ms"] if both else None
    ratio95 = web["p95_ms"] / sip["p95_ms"] if web["p95_ms"] and sip["p95_ms"] else None
    met = diff is not None and diff <= 50
    lines = [
        "# WebRTC (Chromium) beside SIP: caller-side voice-to-voice latency", "",
        f"Machine: {machine()}. No GPU; shared with other work while it ran.", "",
        f"Command: `.venv/bin/python -m bench.webrtc_bench --rounds {rounds}` "
        f"(run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
        "One `ivr serve` (echo handler) took both kinds of call, one at a time, alternating "
        "SIP and WebRTC on the same recordings (" + ", ".join(BENCH_CALLS) + "). SIP: a "
        "pjsua2 caller, G.711 over RTP on loopback. WebRTC: Debian's Chromium, headless, on "
        "`/call`, its fake microphone playing the recording at 48 kHz, Opus over "
        "DTLS-SRTP on the host's own address. Latency: end of each utterance (calls.json) to "
        "the first audible reply sample at the caller, found the same way for both (see the "
        "bench's docstring). Raw, nothing excluded.", "",
        "| transport | calls | turns measured | unanswered | p50 ms | p95 ms | the IVR's own "
        "p50 ms (turn total_ms) | codec | calls recorded with transport, codec and turns |",
        "|---|---|---|---|---|---|---|---|---|"]
    for name, row in (("SIP", sip), ("WebRTC", web)):
        lines.append(f"| {name} | {row['calls']} | {len(row['waits_ms'])} | "
                     f"{row['unanswered']} | {fmt(row['p50_ms'])} | {fmt(row['p95_ms'])} | "
                     f"{fmt(row['ivr_p50_ms'])} | {', '.join(row['codecs'])} | "
                     f"{row['recorded_complete']}/{row['calls']} |")
    lines += ["", "The IVR's own figure runs from the end of speech as its VAD heard it to the "
              "first reply sample handed to the transport; the caller-side figure adds both "
              "directions of the transport and the caller's own buffers. Our WebRTC frames "
              f"that reached aiortc more than a frame late (a busy event loop): "
              f"{web['late_frames']}."]
    lines += ["", f"The page's own figure (what /call shows: its level-based end of speech to "
              f"the reply's first audible block): p50 {fmt(web['page_p50_ms'])} ms, p95 "
              f"{fmt(web['page_p95_ms'])} ms over {len(web['page_ms'])} replies.", ""]
    if both:
        lines += [f"WebRTC − SIP: p50 {diff:+.0f} ms"
                  + (f"; WebRTC / SIP p95 {ratio95:.2f}." if ratio95 else "."), ""]
    lines += [f"Goal (WebRTC p50 ≤ SIP p50 + 50 ms): **{'met' if met else 'not met'}**"
              + (f" ({fmt(web['p50_ms'])} ms against {fmt(sip['p50_ms'])} ms)." if both
                 else "."), "",
              "Where the time goes on the WebRTC side: Chromium's capture and Opus encoder "
              "(20 ms frames), aiortc's jitter buffer and decoder, a 48 → 16 kHz resampler on "
              "the way in; on the way out our 20 ms frames are resampled to 48 kHz and "
              "Opus-encoded by aiortc, then Chromium's NetEq jitter buffer and its audio "
              "output. SIP has PJSIP's jitter buffer and conference bridge on the IVR side and "
              "the caller's on the other.", "",
              "![latency CDF](webrtc.png)", ""]
    (RESULTS / "webrtc.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1,
                        help="times each recording is called over each transport")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save /call mid-call (the warm-up call) as this PNG")
    args = parser.parse_args()
    data = run(args.rounds, args.screenshot)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "webrtc.json").write_text(json.dumps(data, indent=1))
    write_report(data, args.rounds)
    print(f"wrote {RESULTS / 'webrtc.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
