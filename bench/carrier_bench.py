"""Twilio Media Streams beside SIP in the same run: what the caller waits on each transport.

    .venv/bin/python -m bench.carrier_bench [--rounds 1]

One `ivr serve` (echo handler, default models, Twilio enabled) answers both kinds of caller,
one call at a time, alternating: a pjsua2 caller over SIP/RTP (G.711, as in bench.sip_bench) and
a Twilio stand-in over the media stream WebSocket (bench.twilio_client: signed webhook, then
μ-law 20 ms frames in real time, marks echoed once played). Both play the same bench recordings
(real speakers, 8 kHz) after one second of silence. Latency is taken at the caller: from the end
of each utterance (calls.json) to the first audible sample of the reply as it arrived (RTP at
the SIP caller, a ``media`` message at the WebSocket client). Raw p50 and p95, nothing excluded.
Writes bench/results/carrier.md, carrier.png and carrier.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import IvrProcess, run_peer
from bench.latency import machine
from bench.sip_bench import BENCH_CALLS, CALLS, call_latencies, percentile
from bench.twilio_client import place_call

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
AUTH_TOKEN = "bench-twilio-auth-token"
WAIT_S = 1.0  # both callers start speaking this long after the call is up
TAIL_S = 4.0


def sip_call(ivr: IvrProcess, name: str, i: int) -> dict:
    result = run_peer([ivr.uri, "--play", str(CALLS / f"{name}.wav"), "--wait", str(WAIT_S),
                       "--tail", str(TAIL_S), "--caller-id", f"+1555800{i:04d}",
                       "--timeout", "120"], timeout_s=180)
    return {"reply_onsets_s": result.get("reply_onsets_s") or [],
            "connected": result.get("connected", False)}


async def twilio_call(ivr: IvrProcess, name: str, i: int, manifest: dict) -> dict:
    from voice.audio import read_audio
    from voice.transports.sip.caller import audible_onsets

    pcm = read_audio(CALLS / f"{name}.wav").samples
    stream = await place_call(f"http://127.0.0.1:{ivr.http_port}", AUTH_TOKEN,
                              caller=f"+1555700{i:04d}")
    await stream.play(np.zeros(int(WAIT_S * 8000), np.int16))
    await stream.play(pcm)
    await stream.play(np.zeros(int(TAIL_S * 8000), np.int16))
    await stream.stop()
    await stream.wait_closed(15)
    onsets = [t - WAIT_S for t in audible_onsets(stream.heard())]
    return {"reply_onsets_s": [round(t, 3) for t in onsets if t > 0], "connected": True,
            "call_sid": stream.call_sid, "marks": len(stream.received.marks),
            "late_s": [stream.sent_late_s(WAIT_S + u["end_s"])
                       for u in manifest[name]["utterances"]]}


def run(rounds: int) -> dict:
    manifest = json.loads((CALLS / "calls.json").read_text())
    out = {t: {"waits_ms": [], "waits_scheduled_ms": [], "sender_late_ms": [], "unanswered": 0,
               "calls": 0} for t in ("sip", "twilio")}
    out["load_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        ivr = IvrProcess(Path(tmp), {"call": {"handler": "echo"},
                                     "carrier": {"twilio_auth_token": AUTH_TOKEN}}).start()
        try:
            sip_call(ivr, "two_turns_8k", 9999)  # warm-up, not counted
            asyncio.run(twilio_call(ivr, "two_turns_8k", 9999, manifest))
            i = 0
            for _ in range(rounds):
                for name in BENCH_CALLS:
                    utterances = manifest[name]["utterances"]
                    for transport in ("sip", "twilio"):
                        i += 1
                        result = sip_call(ivr, name, i) if transport == "sip" else \
                            asyncio.run(twilio_call(ivr, name, i, manifest))
                        late = result.get("late_s") or [0.0] * len(utterances)
                        # from when the end of speech really left the caller
                        sent = [{**u, "end_s": u["end_s"] + d} for u, d in zip(utterances, late,
                                                                              strict=True)]
                        waits, missing = call_latencies(result, sent)
                        row = out[transport]
                        row["waits_ms"] += waits
                        row["waits_scheduled_ms"] += call_latencies(result, utterances)[0]
                        row["sender_late_ms"] += [round(d * 1000, 1) for d in late]
                        row["unanswered"] += missing
                        row["calls"] += 1
                        print(json.dumps({"transport": transport, "call": name,
                                          "waits_ms": waits, "unanswered": missing}),
                              flush=True)
            time.sleep(2)
            calls = ivr.calls(limit=200)
        finally:
            ivr.stop()
    for transport, prefix in (("sip", "+1555800"), ("twilio", "+1555700")):
        mine = [c for c in calls if (c.get("caller_number") or "").startswith(prefix)
                and not c["caller_number"].endswith("9999")]
        row = out[transport]
        row["recorded"] = len(mine)
        row["recorded_complete"] = sum(
            1 for c in mine if c["transport"] == transport and c["codec"] and c["turns"]
            and c["ended_at"])
        row["codecs"] = sorted({c["codec"] or "-" for c in mine})
        row["p50_ms"] = percentile(row["waits_ms"], 0.5)
        row["p95_ms"] = percentile(row["waits_ms"], 0.95)
        row["p50_scheduled_ms"] = percentile(row["waits_scheduled_ms"], 0.5)
        row["turns_recorded"] = sum(len(c["turns"]) for c in mine)
        lags = [c["context"].get("stream", {}).get("mark_lag_ms_p50") for c in mine]
        row["mark_lag_ms_p50"] = [lag for lag in lags if lag is not None]
    out["load_after"] = os.getloadavg()
    return out


def write_report(data: dict, rounds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sip, tw = data["sip"], data["twilio"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, row, style in (("SIP (pjsua2, RTP)", sip, "o-"),
                             ("Twilio stream (WebSocket)", tw, "s--")):
        waits = sorted(row["waits_ms"])
        if waits:
            ax.plot(waits, np.arange(1, len(waits) + 1) / len(waits), style, label=name)
    ax.set_xlabel("caller-side voice-to-voice (ms)")
    ax.set_ylabel("fraction of turns")
    ax.set_title("SIP and Twilio media stream, same server, same run (echo handler)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "carrier.png", dpi=120)

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    ratio = (tw["p50_ms"] / sip["p50_ms"]) if tw["p50_ms"] and sip["p50_ms"] else None
    ratio95 = (tw["p95_ms"] / sip["p95_ms"]) if tw["p95_ms"] and sip["p95_ms"] else None
    met = ratio is not None and ratio <= 1.0
    lines = [
        "# Twilio media stream beside SIP: caller-side voice-to-voice latency", "",
        f"Machine: {machine()}. No GPU; shared with other work while it ran (load average "
        f"{data['load_before'][0]:.1f} at the start, {data['load_after'][0]:.1f} at the end, on "
        "2 cores), so the absolute figures are well above a quiet machine's.", "",
        f"Command: `.venv/bin/python -m bench.carrier_bench --rounds {rounds}` "
        f"(run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
        "One `ivr serve` (echo handler) took both kinds of call, one at a time, alternating "
        "SIP and Twilio on the same recordings (" + ", ".join(BENCH_CALLS) + "). SIP: a "
        "pjsua2 caller, G.711 over RTP on loopback. Twilio: `bench/twilio_client.py`, which "
        "signs the webhook, opens the stream and sends μ-law 20 ms `media` messages in real "
        "time, as Twilio does. Latency: end of each utterance (calls.json) to the first "
        "audible reply sample as it arrived at the caller. Raw, nothing excluded.", "",
        "| transport | calls | turns measured | unanswered | p50 ms | p95 ms | codec | calls "
        "recorded with transport, codec and turns |",
        "|---|---|---|---|---|---|---|---|"]
    for name, row in (("SIP", sip), ("Twilio stream", tw)):
        lines.append(f"| {name} | {row['calls']} | {len(row['waits_ms'])} | "
                     f"{row['unanswered']} | {fmt(row['p50_ms'])} | {fmt(row['p95_ms'])} | "
                     f"{', '.join(row['codecs'])} | {row['recorded_complete']}/{row['calls']} |")
    late = tw["sender_late_ms"]
    lines += ["", f"Twilio / SIP: p50 {ratio:.2f}, p95 {ratio95:.2f}." if ratio and ratio95
              else "", "",
              "The WebSocket client is Python on the same loaded cores, so its 20 ms sender "
              "sometimes ran late; its waits count from when the end of each utterance really "
              "left it (the frame's send time; late by a median of "
              f"{percentile(late, 0.5) or 0:.0f} ms, at most {max(late, default=0):.0f} ms). "
              "Counted from the schedule instead, the Twilio p50 is "
              f"{fmt(tw['p50_scheduled_ms'])} ms. The pjsua2 caller sends from PJSIP's own "
              "media clock thread.", "",
              f"Goal (Twilio-stream p50 ≤ SIP p50): **{'met' if met else 'not met'}**"
              + (f" ({fmt(tw['p50_ms'])} ms against {fmt(sip['p50_ms'])} ms)." if ratio
                 else "."), "",
              "Reading it: both transports feed the same pipeline at 8 kHz, and most of each "
              "wait is ASR and TTS on a busy CPU, so the two distributions overlap and a "
              "difference of this size between a few dozen turns is within the run-to-run "
              "noise. What the transport itself adds is small on both: SIP audio crosses the "
              "caller's and our jitter buffers and PJSIP's conference bridge; the stream's "
              "frames go from the socket straight into the pipeline and our reply leaves on "
              "the line's own 20 ms clock. Twilio's `mark` echo (the stand-in plays what it "
              "receives from a buffer, as Twilio does) came back after a median of "
              + (", ".join(f"{lag:.0f}" for lag in tw["mark_lag_ms_p50"]) or "-") +
              " ms per call: how far ahead of the playback our audio was. Over the internet "
              "Twilio's edge adds its own buffering, which this loopback bench cannot see; the "
              "same figure in each call record (`context.stream.mark_lag_ms_p50`) measures it "
              "on real calls.", "",
              "![latency CDF](carrier.png)", ""]
    (RESULTS / "carrier.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1,
                        help="times each recording is called over each transport")
    args = parser.parse_args()
    data = run(args.rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "carrier.json").write_text(json.dumps(data, indent=1))
    write_report(data, args.rounds)
    print(f"wrote {RESULTS / 'carrier.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
