"""Caller-perceived latency of our pipeline beside a stock pipecat pipeline, in the same run.

    .venv/bin/python -m bench.latency [--repeat N] [--only ours|stock]

Each bench call (tests/fixtures/calls/bench_*.wav: real speakers, 8 kHz, G.711 mu-law) is played
in real time into both pipelines with the echo turn handler. Latency is taken where the caller
is: from the end of their speech (``calls.json``, measured on the recording by level, not by our
VAD) to the first sample of the reply handed to the transport. Writes
bench/results/latency.md and latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent

import numpy as np
from loguru import logger

CALLS = ROOT / "tests" / "fixtures" / "calls"
RESULTS = ROOT / "bench" / "results"
BENCH_CALLS = ["bench_librivox_8k", "bench_ljspeech_8k", "bench_cards_8k", "two_turns_8k"]


@dataclass
class SystemRun:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0  # utterances with no reply before the caller's next utterance ended
    stages: dict[str, list[float]] = field(default_factory=dict)
    transcripts: list[str] = field(default_factory=list)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {platform.system()} " \
           f"{platform.release()}, Python {platform.python_version()}"


def match_replies(utterances: list[dict], feed_start: float, onsets: list[float]
                  ) -> tuple[list[float], int]:
    """For each utterance, the first reply onset after it ended and before the next one ended."""
    latencies, missing = [], 0
    for k, utterance in enumerate(utterances):
        end = feed_start + utterance["end_s"]
        limit = feed_start + utterances[k + 1]["end_s"] if k + 1 < len(utterances) else 1e18
        after = [t for t in onsets if end < t < limit]
        if after:
            latencies.append((after[0] - end) * 1000)
        else:
            missing += 1
    return latencies, missing


async def run_ours(call: str, utterances: list[dict], run: SystemRun) -> None:
    from voice.app.settings import IvrSettings
    from voice.app.simulate import simulate_call

    result = await simulate_call(CALLS / f"{call}.wav", IvrSettings())
    latencies, missing = match_replies(utterances, result.feed_start, result.reply_onsets)
    run.latencies_ms += latencies
    run.missing += missing
    for turn in result.turns:
        run.transcripts.append(turn.caller_text)
        for stage, ms in turn.stages.items():
            run.stages.setdefault(stage, []).append(ms)
        if turn.total_ms is not None:
            run.stages.setdefault("total (self-reported)", []).append(turn.total_ms)


async def run_stock(call: str, utterances: list[dict], run: SystemRun) -> None:
    from bench.stock_pipecat import run_stock_pipecat
    from models.registry import shared_registry

    registry = shared_registry()
    result = await run_stock_pipecat(CALLS / f"{call}.wav",
                                     whisper_model=str(registry.whisper_path("tiny.en")),
                                     piper_voice=registry.piper_voice_path())
    latencies, missing = match_replies(utterances, result.feed_start, result.reply_onsets)
    run.latencies_ms += latencies
    run.missing += missing
    run.transcripts += result.transcripts


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def write_report(ours: SystemRun, stock: SystemRun | None, repeat: int, seconds: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    n_utts = sum(len(json.loads((CALLS / "calls.json").read_text())[c]["utterances"])
                 for c in BENCH_CALLS) * repeat
    lines = [
        "# Caller-perceived latency: ours vs stock pipecat",
        "",
        f"Machine: {machine()}. No GPU. Run took {seconds:.0f} s.",
        "",
        "Reproduce: `.venv/bin/python -m bench.latency" + (f" --repeat {repeat}" if repeat > 1
                                                         else "") + "`",
        "",
        f"Calls: {', '.join(BENCH_CALLS)} ({n_utts} caller utterances, real speakers, 8 kHz "
        "G.711 mu-law, played in real time). Turn handler: echo, in both pipelines. Latency: "
        "end of the caller's speech (measured on the recording by level) to the first reply "
        "sample handed to the transport.",
        "",
        "| pipeline | p50 ms | p95 ms | mean ms | replies | no reply |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in [ours] + ([stock] if stock else []):
        lines.append(f"| {run.name} | {pct(run.latencies_ms, 50):.0f} | "
                     f"{pct(run.latencies_ms, 95):.0f} | "
                     f"{mean(run.latencies_ms):.0f}"
                     f" | {len(run.latencies_ms)} | {run.missing} |")
    if stock and stock.latencies_ms and ours.latencies_ms:
        p50 = pct(ours.latencies_ms, 50) / pct(stock.latencies_ms, 50)
        p95 = pct(ours.latencies_ms, 95) / pct(stock.latencies_ms, 95)
        lines += ["", f"Ratio ours / stock: p50 {p50:.2f}, p95 {p95:.2f}."]
    lines += ["", "Goal on this machine: p50 < 600 ms, p95 < 900 ms, at most 0.7 x stock.", "",
              "## Our stages (from the turn records)", "",
              "| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
    for stage, values in ours.stages.items():
        lines.append(f"| {stage} | {pct(values, 50):.0f} | {pct(values, 95):.0f} |")
    lines += ["", "![latency](latency.png)", "",
              "## Per utterance (ms, in call order)", "",
              "| pipeline | latencies |", "|---|---|"]
    for run in [ours] + ([stock] if stock else []):
        lines.append(f"| {run.name} | {', '.join(f'{x:.0f}' for x in run.latencies_ms)} |")
    lines += ["", "## Reading these figures", "",
              "- The caller's end of speech is taken from the recording by level (last 10 ms "
              "frame within 25 dB of the utterance's loudest), independent of either VAD. Where a "
              "recording has a breath or noise tail above that level the truth is late and the "
              "figure looks short (the 84-107 ms value on `bench_cards_8k`'s third utterance).",
              "- Ours may end a turn at a mid-sentence pause when Whisper closes the sentence "
              "there (`produced the block books.` / `which were ...`): the caller then barges in "
              "and the turn continues. The stock pipeline splits more often (see what each "
              "heard).",
              "- The stock pipeline runs at 16 kHz with the caller's 8 kHz audio resampled, as "
              "pipecat's telephony serializers deliver it; at 8 kHz its Whisper service heard "
              "nothing (bench/stock_pipecat.py says why).", "",
              "## What each pipeline heard", "",
              "Ours: " + " / ".join(ours.transcripts), ""]
    if stock:
        lines += ["Stock: " + " / ".join(stock.transcripts), ""]
    (RESULTS / "latency.md").write_text("\n".join(lines))
    plot(ours, stock)


def plot(ours: SystemRun, stock: SystemRun | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    data = [ours.latencies_ms] + ([stock.latencies_ms] if stock else [])
    names = [ours.name] + ([stock.name] if stock else [])
    left.boxplot(data, showfliers=True)
    left.set_xticks(range(1, len(names) + 1), names)
    left.axhline(600, color="g", ls="--", lw=1, label="p50 goal 600 ms")
    left.axhline(900, color="r", ls="--", lw=1, label="p95 goal 900 ms")
    left.set_ylabel("end of caller speech -> first reply sample (ms)")
    left.set_title(f"Caller-perceived latency ({machine().split(':')[0]})")
    left.legend(loc="upper left", fontsize=8)
    stages = [s for s in ours.stages if not s.startswith("total")]
    p50 = [pct(ours.stages[s], 50) for s in stages]
    p95 = [pct(ours.stages[s], 95) for s in stages]
    x = np.arange(len(stages))
    right.bar(x - 0.2, p50, 0.4, label="p50")
    right.bar(x + 0.2, p95, 0.4, label="p95")
    right.set_xticks(x, stages, rotation=30, ha="right", fontsize=8)
    right.set_ylabel("ms")
    right.set_title("Our stages")
    right.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "latency.png", dpi=110)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=["ours", "stock"])
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    manifest = json.loads((CALLS / "calls.json").read_text())
    ours, stock = SystemRun("ours"), SystemRun("stock pipecat")
    started = time.perf_counter()
    for _ in range(args.repeat):
        for call in BENCH_CALLS:
            utterances = manifest[call]["utterances"]
            if args.only != "stock":
                await run_ours(call, utterances, ours)
                print(f"ours  {call}: {[round(x) for x in ours.latencies_ms[-len(utterances):]]}",
                      flush=True)
            if args.only != "ours":
                await run_stock(call, utterances, stock)
                print(f"stock {call}: {[round(x) for x in stock.latencies_ms[-len(utterances):]]}",
                      flush=True)
    write_report(ours, stock if args.only != "ours" else None, args.repeat,
                 time.perf_counter() - started)
    print((RESULTS / "latency.md").read_text())


if __name__ == "__main__":
    asyncio.run(main())
