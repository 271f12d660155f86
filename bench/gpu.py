"""ASR under N concurrent calls: cross-call batching vs one turn at a time, on this host's device.

    .venv/bin/python -m bench.gpu                      # CPU here: N = 1, 2, 4, 6, 8
    .venv/bin/python -m bench.gpu --calls 1,16,64,128,200,256 --turns 4   # a GPU host

Whisper runs on whatever device CTranslate2 finds (CUDA float16, else CPU int8). Each simulated
call plays the fixture callers' turns (tests/fixtures/calls: real speakers over 8 kHz G.711,
back to 16 kHz) in real time: it speaks a turn for as long as the recording lasts, its turn
ends, the audio goes to ASR, then it listens to a reply for ``--reply-s`` before speaking the
next turn. Calls start at seeded random offsets within one turn cycle, so turn ends are
staggered and collide as they would on a busy host. The tier sees what it would see from the
workers: one request per turn end, with that turn's audio.

Per N, both schedulers run the same schedule in the same run (alternating which goes first):

- batched: ``BatchingTranscriber`` (asr.batch_window_ms, asr.max_batch);
- one at a time (the baseline): ``WhisperTranscriber`` in one ASR thread, as ``VoiceEngines``
  runs it in every worker today.

ASR latency is turn end to transcript, raw p50 and p95, nothing excluded. Also measured: batch
sizes, process CPU, GPU utilisation and memory (pynvml or nvidia-smi, when on CUDA), batched vs
one-at-a-time throughput at batch 16, and how often padding a turn into a longer encoder window
changes its transcript (why batches only hold one window size).

Results go to bench/results/gpu_<device>.json; bench/results/gpu.md and gpu.png put the CPU and
the GPU runs side by side, a device not yet run marked "not measured".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent

import ctranslate2  # noqa: E402
import numpy as np  # noqa: E402

from bench.latency import machine  # noqa: E402
from voice.app.settings import AsrSettings  # noqa: E402
from voice.asr import Transcript, WhisperTranscriber, max_length  # noqa: E402
from voice.audio import int16_to_float, read_audio, resample  # noqa: E402
from voice.inference.batching import BatchingTranscriber  # noqa: E402

CALLS = ROOT / "tests" / "fixtures" / "calls"
RESULTS = ROOT / "bench" / "results"
GOAL_RATIO = 1.5  # issue 11: ASR p95 at 6 calls <= 1.5x the single-call ASR p50
GOAL_CALLS = 6


@dataclass
class Run:
    mode: str  # "batched" or "unbatched"
    calls: int
    latencies_ms: list[float]
    batch_sizes: dict[int, int]
    wall_s: float
    cpu_pct: float  # process CPU over the run, % of one core
    gpu_util_pct: float | None = None
    gpu_util_max_pct: float | None = None
    gpu_mem_mib: float | None = None

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.latencies_ms, 95))


@dataclass
class Report:
    device: str
    machine: str
    model: str
    budget_ms: float
    window_ms: float
    max_batch: int
    reply_s: float
    rounds: int = 1
    load: list[float] = field(default_factory=list)  # 1-min load average at start and end
    cpu_pressure_pct: float | None = None  # share of the run some task waited for a CPU (PSI)
    runs: list[Run] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)
    padding: dict[str, int] = field(default_factory=dict)


def fixture_turns() -> list[np.ndarray]:
    """The callers' turns of the fixture calls, cut as the VAD would (a little lead and tail)."""
    manifest = json.loads((CALLS / "calls.json").read_text())
    turns = []
    for info in manifest.values():
        audio = read_audio(CALLS / info["file"])
        for turn in info["utterances"]:
            a = int(max(0.0, turn["start_s"] - 0.2) * 8000)
            b = int((turn["end_s"] + 0.12) * 8000)
            turns.append(resample(audio.samples[a:b], 8000, 16000))
    return turns


class GpuSampler:
    """GPU utilisation and memory every 250 ms while a run lasts (pynvml, else nvidia-smi)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and (self._nvml() is not None or shutil.which("nvidia-smi"))
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _nvml():  # noqa: ANN205 - the module, if present
        try:
            import pynvml

            pynvml.nvmlInit()
            return pynvml
        except Exception:  # noqa: BLE001 - not installed or no driver: try nvidia-smi
            return None

    def _read(self) -> tuple[float, float] | None:
        nvml = self._nvml()
        if nvml is not None:
            handle = nvml.nvmlDeviceGetHandleByIndex(0)
            util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
            return float(util), nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                              "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=5, check=False).stdout
        try:
            util, mem = (float(v) for v in out.strip().split(","))
        except ValueError:
            return None
        return util, mem

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            sample = self._read()
            if sample is not None:
                self.samples.append(sample)

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


async def play_calls(transcribe: Callable[[np.ndarray], Awaitable[Transcript]],
                     turns: list[np.ndarray], calls: int, turns_per_call: int, reply_s: float,
                     seed: int) -> list[float]:
    """N callers speaking their turns in real time; ASR latency of every turn, in ms."""
    rng = random.Random(seed * 1000 + calls)
    cycle = statistics.mean(len(t) / 16000 for t in turns) + reply_s
    offsets = [rng.uniform(0, cycle) for _ in range(calls)]
    firsts = [rng.randrange(len(turns)) for _ in range(calls)]
    latencies: list[float] = []

    async def call(offset: float, first: int) -> None:
        await asyncio.sleep(offset)
        for k in range(turns_per_call):
            samples = turns[(first + k) % len(turns)]
            await asyncio.sleep(len(samples) / 16000)  # the caller speaks the turn
            ended = time.perf_counter()
            await transcribe(samples)
            latencies.append((time.perf_counter() - ended) * 1000)
            await asyncio.sleep(reply_s)  # the caller listens to our reply

    await asyncio.gather(*(call(o, f) for o, f in zip(offsets, firsts, strict=True)))
    return latencies


async def run_mode(mode: str, model, args: argparse.Namespace, turns: list[np.ndarray],  # noqa: ANN001
                   calls: int, gpu: bool, seed: int) -> Run:
    settings = AsrSettings(batch_window_ms=args.window_ms, max_batch=args.max_batch)
    turns_per_call = max(args.turns, math.ceil(args.min_turns / calls))
    loop = asyncio.get_running_loop()
    batcher = None
    if mode == "batched":
        batcher = BatchingTranscriber(model, settings, budget_ms=args.budget_ms)
        transcribe = batcher.transcribe
    else:
        single = WhisperTranscriber(model, settings)
        pool = ThreadPoolExecutor(1, thread_name_prefix="asr")

        def transcribe(samples: np.ndarray) -> Awaitable[Transcript]:
            return loop.run_in_executor(pool, single.transcribe, samples, 16000)

    cpu0, wall0 = os.times(), time.perf_counter()
    with GpuSampler(gpu) as sampler:
        latencies = await play_calls(transcribe, turns, calls, turns_per_call, args.reply_s,
                                     seed)
    cpu1, wall = os.times(), time.perf_counter() - wall0
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100
    sizes: dict[int, int] = {1: len(latencies)}
    if batcher is not None:
        sizes = dict(sorted(batcher.batch_sizes.items()))
        await batcher.aclose()
    else:
        pool.shutdown()
    run = Run(mode, calls, latencies, sizes, wall, cpu)
    if sampler.samples:
        utils = [u for u, _ in sampler.samples]
        run.gpu_util_pct, run.gpu_util_max_pct = statistics.mean(utils), max(utils)
        run.gpu_mem_mib = max(m for _, m in sampler.samples)
    return run


async def throughput(model, args: argparse.Namespace, turns: list[np.ndarray]  # noqa: ANN001
                     ) -> dict[str, float]:
    """16 same-window turns: one batched pass vs one after another (best of 3 each)."""
    batch = turns[:16]
    single = WhisperTranscriber(model, AsrSettings())
    batcher = BatchingTranscriber(model, AsrSettings(batch_window_ms=100, max_batch=16),
                                  budget_ms=args.budget_ms)
    alone = [single.transcribe(t, 16000) for t in batch]  # also warms the model
    times: dict[str, list[float]] = {"batched": [], "unbatched": []}
    cpu: dict[str, list[float]] = {"batched": [], "unbatched": []}
    together: list[Transcript] = []
    for _ in range(3):
        started, cpu0 = time.perf_counter(), time.process_time()
        together = await asyncio.gather(*(batcher.transcribe(t) for t in batch))
        times["batched"].append(time.perf_counter() - started)
        cpu["batched"].append(time.process_time() - cpu0)
        started, cpu0 = time.perf_counter(), time.process_time()
        for t in batch:
            single.transcribe(t, 16000)
        times["unbatched"].append(time.perf_counter() - started)
        cpu["unbatched"].append(time.process_time() - cpu0)
    sizes = dict(batcher.batch_sizes)
    await batcher.aclose()
    best = {k: min(v) for k, v in times.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    return {"batched_per_s": 16 / best["batched"], "unbatched_per_s": 16 / best["unbatched"],
            "ratio": best["unbatched"] / best["batched"],
            "batched_cpu_ms_per_turn": best_cpu["batched"] / 16 * 1000,
            "unbatched_cpu_ms_per_turn": best_cpu["unbatched"] / 16 * 1000,
            "batches_of_16": sizes.get(16, 0),
            "same_text": sum(a.text == b.text for a, b in zip(alone, together, strict=True)),
            "turns": len(batch)}


def padding_changes(model, turns: list[np.ndarray]) -> dict[str, int]:  # noqa: ANN001
    """How many turns transcribe differently when padded into a 15 s or 30 s encoder window
    (what mixing window sizes in one batch would do) instead of their own, and through
    faster-whisper's ``BatchedInferencePipeline``."""
    from faster_whisper import BatchedInferencePipeline

    single = WhisperTranscriber(model, AsrSettings())
    pipeline = BatchedInferencePipeline(model)
    prompt = single.prompt("en")
    changed = {"turns": len(turns), "own_window": 0}
    for samples in turns:
        own = single.transcribe(samples, 16000).text
        audio_s, window = single.encoder_window(samples)
        for frames in (1500, 3000):
            padded = np.full((window.shape[0], frames), window.min(), dtype=np.float32)
            padded[:, : window.shape[1]] = window
            encoded = model.model.encode(ctranslate2.StorageView.from_array(padded[None]),
                                         to_cpu=False)
            result = model.model.generate(encoded, [prompt],
                                          max_length=max_length(len(prompt), audio_s),
                                          **single.generate_options())[0]
            text = single.transcript(result, "en", audio_s, 0.0).text
            key = f"padded_{frames // 100}s"
            changed[key] = changed.get(key, 0) + (text != own)
        changed["own_window"] += window.shape[1] == 1000
        # faster-whisper's own batching (VAD chunks of one recording in 30 s windows), given the
        # whole turn as its one chunk.
        audio = int16_to_float(samples)
        segments, _ = pipeline.transcribe(audio, language="en", beam_size=1,
                                          without_timestamps=True, vad_filter=False,
                                          clip_timestamps=[{"start": 0.0, "end": audio_s}])
        text = " ".join(segment.text.strip() for segment in segments)
        changed["batched_pipeline"] = changed.get("batched_pipeline", 0) + (text != own)
    return changed


def cpu_stall_us() -> float | None:
    """Linux PSI: microseconds some runnable task of this host has waited for a CPU."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return float(line.rsplit("total=", 1)[1])


def first_over(runs: list[Run], mode: str, budget_ms: float) -> str:
    for run in sorted((r for r in runs if r.mode == mode), key=lambda r: r.calls):
        if run.p95 > budget_ms:
            return str(run.calls)
    tested = max((r.calls for r in runs if r.mode == mode), default=0)
    return f"not reached up to N={tested}"


def write_report(reports: dict[str, Report]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu, cuda = reports.get("cpu"), reports.get("cuda")
    lines = ["# ASR under concurrent calls: cross-call batching, CPU and GPU", ""]
    for name, report in (("CPU", cpu), ("GPU", cuda)):
        if report is None:
            lines.append(f"- **{name}**: not measured (no such device was lent to a run of this "
                         "bench yet).")
        else:
            lines.append(f"- **{name}**: {report.machine}; Whisper {report.model} "
                         f"({report.device}); asr.batch_window_ms {report.window_ms:g}, "
                         f"asr.max_batch {report.max_batch}, reply {report.reply_s:g} s, "
                         f"{report.rounds} round(s) pooled, "
                         f"ASR budget {report.budget_ms:g} ms; 1-minute load average "
                         f"{' at start, '.join(f'{v:.1f}' for v in report.load)} at end, "
                         "some task waiting for a CPU "
                         + (f"{report.cpu_pressure_pct:.0f} %" if report.cpu_pressure_pct
                            is not None else "(not recorded)")
                         + " of the run (Linux PSI; other work shares this host).")
    lines += ["", "Reproduce: `.venv/bin/python -m bench.gpu` (this host's device; CPU: N = 1, 2, "
              "4, 6, 8). Each call speaks the fixture callers' turns in real time (24 turns, "
              "1.1-7.9 s, real speakers over G.711), turn ends staggered by seeded random "
              "start offsets; ASR latency is turn end to transcript, raw, nothing excluded. "
              "Batched and one-at-a-time (today's path: one model, one ASR thread) run the "
              "same schedule in the same run.", ""]
    lines += ["| N calls | CPU batched p50 / p95 / max ms | CPU one-at-a-time p50 / p95 / max ms | "
              "CPU batch sizes (batches) | CPU process CPU % | GPU batched p50 / p95 / max ms | "
              "GPU one-at-a-time p50 / p95 / max ms | GPU util % (mean/max) | GPU memory MiB |",
              "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]

    def cell(report: Report | None, mode: str, n: int) -> Run | None:
        if report is None:
            return None
        return next((r for r in report.runs if r.mode == mode and r.calls == n), None)

    ns = sorted({r.calls for rep in reports.values() for r in rep.runs})
    for n in ns:
        row = [str(n)]
        for report in (cpu, cuda):
            b, u = cell(report, "batched", n), cell(report, "unbatched", n)
            row.append(f"{b.p50:.0f} / {b.p95:.0f} / {max(b.latencies_ms):.0f}" if b
                       else "not measured")
            row.append(f"{u.p50:.0f} / {u.p95:.0f} / {max(u.latencies_ms):.0f}" if u
                       else "not measured")
            if report is cpu:
                row.append(", ".join(f"{k}: {v}" for k, v in sorted(b.batch_sizes.items(),
                                                                     key=lambda kv: int(kv[0])))
                           if b else "not measured")
                row.append(f"{b.cpu_pct:.0f} / {u.cpu_pct:.0f}" if b and u else "n/a")
            else:
                if b is None:
                    row += ["not measured", "not measured"]
                else:
                    row.append(f"{b.gpu_util_pct:.0f} / {b.gpu_util_max_pct:.0f}"
                               if b.gpu_util_pct is not None else "n/a")
                    row.append(f"{b.gpu_mem_mib:.0f}" if b.gpu_mem_mib is not None else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Process CPU % is batched / one-at-a-time, of one core (this host has "
              f"{os.cpu_count()}). Batch sizes: size: how many batches.", ""]

    lines += ["## Goals", "", "| measure | device | batched | one at a time | goal |",
              "|---|---|---:|---:|---|"]
    for name, report in (("CPU", cpu), ("GPU", cuda)):
        if report is None:
            lines.append(f"| ASR p95 at {GOAL_CALLS} calls / single-call ASR p50 | {name} | "
                         "not measured | not measured | ≤ 1.5 |")
            lines.append(f"| calls within the ASR budget (first N whose p95 exceeds it) | {name} "
                         "| not measured | not measured | ≥ 200 on a GPU |")
            lines.append(f"| batched / one-at-a-time throughput at batch 16 | {name} | "
                         "not measured | | ≥ 4× on a GPU |")
            continue
        single = cell(report, "unbatched", 1)
        b6, u6 = cell(report, "batched", GOAL_CALLS), cell(report, "unbatched", GOAL_CALLS)
        if single and b6 and u6:
            lines.append(f"| ASR p95 at {GOAL_CALLS} calls / single-call ASR p50 "
                         f"({single.p50:.0f} ms, one at a time, N=1) | {name} | "
                         f"{b6.p95 / single.p50:.2f} ({b6.p95:.0f} ms) | "
                         f"{u6.p95 / single.p50:.2f} ({u6.p95:.0f} ms) | ≤ {GOAL_RATIO} "
                         f"({'met' if b6.p95 <= GOAL_RATIO * single.p50 else 'missed'}) |")
        lines.append(f"| first N whose ASR p95 exceeds the {report.budget_ms:g} ms budget | "
                     f"{name} | {first_over(report.runs, 'batched', report.budget_ms)} | "
                     f"{first_over(report.runs, 'unbatched', report.budget_ms)} | "
                     "≥ 200 calls within it on a GPU |")
        t = report.throughput
        if t:
            lines.append(f"| throughput at batch 16 (turns/s) | {name} | "
                         f"{t['batched_per_s']:.1f} | {t['unbatched_per_s']:.1f} | "
                         f"ratio {t['ratio']:.2f}× (goal ≥ 4× on a GPU) |")
    lines.append("")
    for name, report in (("CPU", cpu), ("GPU", cuda)):
        if report is not None and report.throughput:
            t = report.throughput
            lines.append(f"{name} throughput: best of 3 passes over the same {t['turns']} "
                         f"turns; {t['batches_of_16']} batches of 16 formed; process CPU per "
                         f"turn {t['batched_cpu_ms_per_turn']:.0f} ms batched, "
                         f"{t['unbatched_cpu_ms_per_turn']:.0f} ms one at a time; "
                         f"{t['same_text']}/{t['turns']} batched transcripts identical to the "
                         "unbatched ones.")
    lines.append("")
    lines += ["## Why a batch holds one encoder window size", "",
              "Turns are encoded in a window sized to them (10 s for these turns, steps of 5 s "
              "up to Whisper's 30 s). Padding a turn into a longer window, as one batch of mixed "
              "lengths would need, changes some transcripts; batches of one window size give "
              "exactly the unbatched transcripts (see tests/test_inference_batching.py). So the "
              "scheduler batches only same-window turns; the window of a batch is its longest "
              "member's because every member has that window.", ""]
    for name, report in (("CPU", cpu), ("GPU", cuda)):
        if report is not None and report.padding:
            p = report.padding
            lines.append(f"- {name}: of {p['turns']} turns ({p['own_window']} with a 10 s "
                         f"window), padded to 15 s: {p['padded_15s']} transcripts change; to "
                         f"30 s: {p['padded_30s']} change; faster-whisper's "
                         "`BatchedInferencePipeline` (30 s windows), given each turn as one "
                         f"chunk: {p.get('batched_pipeline', 'n/a')} change.")
    lines += ["", "![ASR latency vs calls](gpu.png)", ""]
    (RESULTS / "gpu.md").write_text("\n".join(lines))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, report, style in (("CPU", cpu, "-"), ("GPU", cuda, "--")):
        if report is None:
            continue
        for mode, colour in (("batched", "tab:blue"), ("unbatched", "tab:orange")):
            runs = sorted((r for r in report.runs if r.mode == mode), key=lambda r: r.calls)
            xs = [r.calls for r in runs]
            label = f"{name} {'batched' if mode == 'batched' else 'one at a time'}"
            axes[0].plot(xs, [r.p95 for r in runs], style, color=colour, marker="o",
                         label=f"{label} p95")
            axes[0].plot(xs, [r.p50 for r in runs], style, color=colour, marker=".", alpha=0.5,
                         label=f"{label} p50")
        batched = sorted((r for r in report.runs if r.mode == "batched"), key=lambda r: r.calls)
        axes[1].plot([r.calls for r in batched],
                     [sum(int(k) * v for k, v in r.batch_sizes.items()) /
                      max(1, sum(r.batch_sizes.values())) for r in batched],
                     style, marker="o", label=f"{name} mean batch size")
        axes[0].axhline(report.budget_ms, color="grey", linestyle=":", label="ASR budget")
        single = cell(report, "unbatched", 1)
        if single is not None:
            axes[0].axhline(GOAL_RATIO * single.p50, color="green", linestyle=":",
                            label=f"{name} 1.5× single-call p50")
    axes[0].set_xlabel("concurrent calls")
    axes[0].set_ylabel("ASR latency per turn, ms")
    axes[0].legend(fontsize=7)
    axes[0].set_title("ASR latency vs calls (GPU: not measured)" if cuda is None else
                      "ASR latency vs calls")
    axes[1].set_xlabel("concurrent calls")
    axes[1].set_ylabel("turns per forward pass")
    axes[1].legend(fontsize=7)
    axes[1].set_title("mean batch size")
    fig.tight_layout()
    fig.savefig(RESULTS / "gpu.png", dpi=110)


def load_report(path: Path) -> Report:
    raw = json.loads(path.read_text())
    runs = [Run(**{**r, "batch_sizes": {int(k): v for k, v in r["batch_sizes"].items()}})
            for r in raw.pop("runs")]
    return Report(**raw, runs=runs)


def merge(report: Report, run: Run) -> None:
    """Pool a round's run into the report's run of the same mode and N."""
    same = next((r for r in report.runs if r.mode == run.mode and r.calls == run.calls), None)
    if same is None:
        report.runs.append(run)
        return
    total = same.wall_s + run.wall_s
    same.cpu_pct = (same.cpu_pct * same.wall_s + run.cpu_pct * run.wall_s) / total
    if run.gpu_util_pct is not None and same.gpu_util_pct is not None:
        same.gpu_util_pct = (same.gpu_util_pct * same.wall_s
                             + run.gpu_util_pct * run.wall_s) / total
        same.gpu_util_max_pct = max(same.gpu_util_max_pct or 0, run.gpu_util_max_pct or 0)
        same.gpu_mem_mib = max(same.gpu_mem_mib or 0, run.gpu_mem_mib or 0)
    same.wall_s = total
    same.latencies_ms += run.latencies_ms
    for size, count in run.batch_sizes.items():
        same.batch_sizes[size] = same.batch_sizes.get(size, 0) + count


async def main_async(args: argparse.Namespace) -> None:
    from models.config import ModelSettings
    from models.registry import shared_registry

    registry = shared_registry(ModelSettings(device=args.device, asr_model=args.model))
    device = registry.device.device
    model = registry.whisper()
    turns = fixture_turns()
    single = WhisperTranscriber(model, AsrSettings())
    for samples in turns[:3]:
        single.transcribe(samples, 16000)  # warm
    calls = [int(n) for n in (args.calls or ("1,2,4,6,8" if device == "cpu" else
                                             "1,16,64,128,200,256")).split(",")]
    report = Report(device=registry.whisper_device, machine=machine(), model=args.model,
                    budget_ms=args.budget_ms, window_ms=args.window_ms,
                    max_batch=args.max_batch, reply_s=args.reply_s, rounds=args.rounds,
                    load=[os.getloadavg()[0]])
    stall0, wall0 = cpu_stall_us(), time.perf_counter()
    for round_ in range(args.rounds):
        for i, n in enumerate(calls):
            first = "batched" if (i + round_) % 2 == 0 else "unbatched"
            for mode in (first, "unbatched" if first == "batched" else "batched"):
                run = await run_mode(mode, model, args, turns, n, device == "cuda",
                                     args.seed + round_)
                print(f"round {round_ + 1} N={n:>3} {mode:>9}: p50 {run.p50:6.0f} ms  "
                      f"p95 {run.p95:6.0f} ms  turns {len(run.latencies_ms):>4}  "
                      f"batches {run.batch_sizes}  cpu {run.cpu_pct:.0f}%", flush=True)
                merge(report, run)
    report.throughput = await throughput(model, args, turns)
    print("throughput at batch 16:", report.throughput, flush=True)
    report.padding = padding_changes(model, turns)
    print("padding:", report.padding, flush=True)
    report.load.append(os.getloadavg()[0])
    stall1 = cpu_stall_us()
    if stall0 is not None and stall1 is not None:
        report.cpu_pressure_pct = (stall1 - stall0) / 1e6 / (time.perf_counter() - wall0) * 100
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"gpu_{device}.json").write_text(json.dumps(asdict(report), indent=1) + "\n")
    reports = {}
    for name in ("cpu", "cuda"):
        path = RESULTS / f"gpu_{name}.json"
        if path.exists():
            reports[name] = load_report(path)
    write_report(reports)
    print(f"wrote {RESULTS / 'gpu.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", help="comma-separated N (CPU default 1,2,4,6,8)")
    parser.add_argument("--turns", type=int, default=8, help="turns per call")
    parser.add_argument("--min-turns", type=int, default=20,
                        help="at least this many turns per N (more turns per call at small N)")
    parser.add_argument("--reply-s", type=float, default=1.5,
                        help="seconds each caller listens to a reply between turns")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--window-ms", type=float, default=10.0, help="asr.batch_window_ms")
    parser.add_argument("--max-batch", type=int, default=16, help="asr.max_batch")
    parser.add_argument("--budget-ms", type=float, default=350.0, help="budget.asr_ms")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=2,
                        help="sweeps over N, pooled (the order of the modes alternates)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
