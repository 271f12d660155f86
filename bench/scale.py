"""Concurrent calls through the Kamailio edge against 1, 2 and 3 `ivr serve` workers.

    .venv/bin/python -m bench.scale [--runs 1x4,1x6,2x6,3x6,3x9] [--baseline 4]

One `ivr cluster` (Kamailio + 3 workers under supervisord, echo handler, sip.max_calls 4: what
one process carries) serves every run; a run with W workers disables the others in Kamailio's
dispatcher (``kamcmd dispatcher.set_state d``), so each run sees only W. Each call is a
pjsua2 caller process (voice.transports.sip.caller) playing a bench recording (real speakers,
8 kHz G.711 over RTP) to the edge. The baseline, in the same session, is today's set-up: C
calls straight to one worker, no edge.

Measured per run: caller-side voice-to-voice p50/p95 (end of each utterance, from calls.json,
to the first audible reply sample received over RTP; raw, nothing excluded), turns whose wait
was over budget.total_ms, CPU seconds (workers + Kamailio) per second of call, each worker's
RSS growth per concurrent call it carried (peak during the run minus idle before it), calls
refused (503) and answered calls without a complete record. A capacity model for a 16-core
host and a GPU host is computed from these per-call costs. Writes bench/results/scale.md,
scale.png and scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import API_TOKEN, PYTHON, ROOT, free_port, run_peer
from bench.latency import machine
from bench.sip_bench import BENCH_CALLS, CALLS, call_latencies, cpu_seconds, percentile

RESULTS = ROOT / "bench" / "results"
WORKERS = 3
MAX_CALLS = 4  # PJSUA_MAX_CALLS of the pjsua2 wheel
WAIT_S = 1.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, PSS (shared pages divided among the processes sharing them) and the shared part
    of RSS, from /proc/PID/smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            fields[name] = int(rest.split()[0]) / 1024
    return {"rss": fields.get("Rss", 0.0), "pss": fields.get("Pss", 0.0),
            "shared": fields.get("Shared_Clean", 0.0) + fields.get("Shared_Dirty", 0.0)}


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (Kamailio forks its workers)."""
    out = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += tree_pids(int(child))
    return out


class Sampler:
    """Peak RSS of each worker, sampled every 0.5 s while a run lasts."""

    def __init__(self, pids: dict[int, int]) -> None:
        self.pids, self.peak = pids, {i: 0.0 for i in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, pid in self.pids.items():
                try:
                    self.peak[i] = max(self.peak[i], rss_mb(pid))
                except OSError:
                    pass
            self._stop.wait(0.5)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def get(port: int, path: str):
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def set_workers(plan, count: int) -> None:
    """Only the first ``count`` workers in Kamailio's rotation; the rest disabled."""
    for worker in plan.workers:
        state = "ap" if worker.index <= count else "d"
        subprocess.run(["kamcmd", "-s", f"unix:{plan.control_socket}", "dispatcher.set_state",
                        state, "1", worker.sip_uri], check=True, capture_output=True)


def run_level(plan, label: str, uri: str, workers: int, concurrency: int, manifest: dict,
              budget_ms: float, tag: int, fresh_rss: dict[int, float]) -> dict:
    """``fresh_rss``: each worker's RSS when it had just started, before any call."""
    pids = {w.index: plan.pid(w) for w in plan.workers}
    edge = plan.pid("edge")
    edge_pids = tree_pids(edge)
    idle = {i: rss_mb(pid) for i, pid in pids.items()}
    sharing = {i: memory_mb(pid) for i, pid in pids.items()}
    cpu_before = sum(cpu_seconds(p) for p in [*pids.values(), *edge_pids])
    names = [BENCH_CALLS[i % len(BENCH_CALLS)] for i in range(concurrency)]
    numbers = [f"+1556{tag:02d}{i:05d}" for i in range(concurrency)]

    def one(i: int) -> dict:
        time.sleep(0.25 * i)  # a burst, not one instant: as calls arrive on a line
        return run_peer([uri, "--play", str(CALLS / f"{names[i]}.wav"), "--wait", str(WAIT_S),
                         "--tail", "4", "--caller-id", numbers[i], "--timeout", "120"],
                        timeout_s=180)

    started = time.time()
    with Sampler(pids) as sampler, ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(concurrency)))
    wall = time.time() - started
    cpu = sum(cpu_seconds(p) for p in [*pids.values(), *edge_pids]) - cpu_before
    time.sleep(2.0)  # the last records are written after the BYE
    records = {}
    for w in plan.workers:
        for record in get(w.http_port, f"/api/calls?limit={concurrency + 20}"):
            records[record["caller_number"]] = (w.index, record)
    waits, missing, over, seconds, refused, lost = [], 0, 0, 0.0, 0, 0
    per_worker: dict[int, int] = {}
    for name, number, result in zip(names, numbers, results, strict=True):
        if not result["connected"]:
            refused += result.get("status") == 503
            continue
        w, m = call_latencies(result, manifest[name]["utterances"])
        waits += w
        missing += m
        over += sum(1 for x in w if x > budget_ms)
        seconds += result.get("seconds", 0.0)
        found = records.get(number)
        if found is None or not found[1]["ended_at"] or not found[1]["turns"]:
            lost += 1
        else:
            per_worker[found[0]] = per_worker.get(found[0], 0) + 1
    growth = [(sampler.peak[i] - idle[i]) / n for i, n in per_worker.items() if n]
    since_start = [(sampler.peak[i] - fresh_rss[i]) / n for i, n in per_worker.items() if n]
    return {"label": label, "workers": workers, "concurrency": concurrency,
            "connected": sum(1 for r in results if r["connected"]), "refused": refused,
            "records_missing": lost, "per_worker": per_worker, "waits_ms": waits,
            "p50_ms": percentile(waits, 0.5), "p95_ms": percentile(waits, 0.95),
            "turns": len(waits) + missing, "unanswered": missing, "over_budget": over,
            "call_seconds": round(seconds, 1), "cpu_s": round(cpu, 1),
            "cpu_per_call_s": round(cpu / seconds, 3) if seconds else None,
            "rss_idle_mb": {i: round(v) for i, v in idle.items()},
            "idle_memory_mb": {i: {k: round(v) for k, v in m.items()}
                               for i, m in sharing.items()},
            "rss_peak_mb": {i: round(v) for i, v in sampler.peak.items()},
            "rss_per_call_mb": round(sum(growth) / len(growth), 1) if growth else None,
            "rss_per_call_since_start_mb": round(max(since_start), 1) if since_start else None,
            "edge_rss_mb": round(sum(rss_mb(p) for p in edge_pids)),
            "wall_s": round(wall, 1)}


def start_cluster(workdir: Path):
    from voice.app import cluster

    base = {"call": {"handler": "echo"},
            "sip": {"max_calls": MAX_CALLS},
            "server": {"store_url": f"sqlite:///{workdir / 'ivr.sqlite'}",
                       "spool_dir": str(workdir / "spool"), "api_tokens": [API_TOKEN]},
            "cluster": {"workers": WORKERS, "edge_port": free_port(),
                        "first_sip_port": free_port(), "first_http_port": free_port(),
                        "directory": str(workdir / "c")}}
    first = base["cluster"]["first_sip_port"]
    base["cluster"]["first_sip_port"] = first if first + WORKERS < 65000 else 30000
    base["cluster"]["first_http_port"] = base["cluster"]["first_sip_port"] + 10
    base["sip"]["rtp_port"] = 20000 + base["cluster"]["first_sip_port"] % 20000
    (workdir / "ivr.yaml").write_text(json.dumps(base))
    plan = cluster.plan(workdir / "ivr.yaml")
    log = open(workdir / "cluster.log", "w")
    proc = subprocess.Popen([PYTHON, "-m", "voice.app.cli", "--config",
                             str(workdir / "ivr.yaml"), "cluster"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ,
                                                           "PYTHONUNBUFFERED": "1"})
    plan.wait_active(timeout_s=600)
    return plan, proc


def capacity(rows: list[dict], budget_ms: float) -> list[str]:
    """Calls a 16-core host and a GPU host could carry, from the measured per-call costs."""
    costs = [r["cpu_per_call_s"] for r in rows if r["cpu_per_call_s"] and r["label"] != "direct"]
    per_call = [r["rss_per_call_mb"] for r in rows if r["rss_per_call_mb"] is not None]
    idle = [v for r in rows for v in r["rss_idle_mb"].values()]
    if not costs or not idle:
        return ["Not enough data for a capacity model."]
    cpu = min(costs)  # the least contended run: closest to the cost on an idle core
    mem_call = max(per_call) if per_call else 0.0
    idle_mb = sum(idle) / len(idle)
    cores, headroom = 16, 0.7
    calls_cpu = cores * headroom / cpu
    workers = -(-calls_cpu // 3)
    mem_gb = (workers * idle_mb + calls_cpu * mem_call) / 1024
    lines = ["## Capacity model (computed from the figures above, not measured)", "",
             f"- Measured cost: **{cpu:.3f} CPU-seconds per call-second** (lowest of the edge "
             f"runs; contention on 2 cores inflates the others), worker idle RSS "
             f"**{idle_mb:.0f} MB**, RSS growth **{mem_call:.0f} MB per concurrent call** "
             "(largest measured).",
             f"- **16-core CPU host**: {cores} cores x {headroom:.0%} target utilisation / "
             f"{cpu:.3f} = **about {calls_cpu:.0f} concurrent calls**, in {workers:.0f} workers "
             f"of 3 calls (one place kept for a transfer leg), needing about {mem_gb:.0f} GB "
             "of RAM. Latency stays near the 1-worker figures only while cores are not "
             "oversubscribed; that is what the 70% keeps.",
             "- **GPU host** (ASR and TTS on the GPU through the per-host inference seam, "
             "models.inference_url): the CPU left per call is the media path, VAD, the turn "
             "logic and the PJSIP bridge. Assuming ASR and TTS are three quarters of the "
             "measured CPU cost (an assumption, not measured here) and leave the CPU entirely, "
             f"a 16-core host carries about {calls_cpu * 4:.0f} calls, limited "
             "then by PJSIP's 4 legs per process (workers: calls / 3) and by RAM, with the "
             "models loaded once on the GPU instead of in every worker.", ""]
    return lines


def load_note(rows: list[dict]) -> str:
    """What the host's 1-minute load average was at the end of each run: other work on these
    two cores raises every latency here."""
    loads = [r["load_1m"] for r in rows if "load_1m" in r]
    if not loads:
        return "The host's load was not recorded in this run's data."
    return (f"1-minute load average at the end of each run: {min(loads):g} to {max(loads):g} "
            "(2 cores; other work on the host raises every latency).")


def write_report(rows: list[dict], budget_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['label']}\n{r['workers']}w C={r['concurrency']}" for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(rows))
    ax1.bar([i - 0.2 for i in x], [r["p50_ms"] or 0 for r in rows], 0.4, label="p50")
    ax1.bar([i + 0.2 for i in x], [r["p95_ms"] or 0 for r in rows], 0.4, label="p95")
    ax1.axhline(budget_ms, color="red", linewidth=0.8, label=f"budget {budget_ms:.0f} ms")
    ax1.set_xticks(list(x), labels, fontsize=7)
    ax1.set_ylabel("caller-side voice-to-voice (ms)")
    ax1.legend(fontsize=7)
    ax2.bar(list(x), [r["cpu_per_call_s"] or 0 for r in rows])
    ax2.set_xticks(list(x), labels, fontsize=7)
    ax2.set_ylabel("CPU seconds per call-second")
    fig.suptitle("Calls through Kamailio to 1-3 IVR workers (2 cores)")
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=110)

    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    lines = ["# Scale bench: Kamailio edge + IVR workers", "",
             f"Machine: {machine()}. No GPU. {load_note(rows)}", "",
             "Command: `.venv/bin/python -m bench.scale` "
             f"(run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
             __doc__.split("\n\n", 2)[2].strip(), "",
             "| run | workers | C | answered | refused (503) | records missing | p50 ms | "
             "p95 ms | turns over budget | unanswered turns | CPU s per call-s | RSS per "
             "call MB (over idle before the run) | RSS per call MB (over a fresh worker) | "
             "worker idle RSS MB | calls per worker |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        idle = "/".join(str(v) for v in r["rss_idle_mb"].values())
        spread = ",".join(f"w{k}:{v}" for k, v in sorted(r["per_worker"].items()))
        lines.append(f"| {r['label']} | {r['workers']} | {r['concurrency']} | {r['connected']} "
                     f"| {r['refused']} | {r['records_missing']} | {fmt(r['p50_ms'])} | "
                     f"{fmt(r['p95_ms'])} | {r['over_budget']}/{r['turns']} | "
                     f"{r['unanswered']} | {r['cpu_per_call_s']} | "
                     f"{fmt(r['rss_per_call_mb'])} | {fmt(r['rss_per_call_since_start_mb'])} "
                     f"| {idle} | {spread} |")
    base = next((r for r in rows if r["label"] == "direct"), None)
    same = next((r for r in rows if r["label"] == "edge" and base and
                 r["workers"] == 1 and r["concurrency"] == base["concurrency"]), None)
    lines += [""]
    if base and same and base["p50_ms"] and same["p50_ms"]:
        lines += [f"Edge vs direct at C={base['concurrency']}, one worker (same session): p50 "
                  f"ratio {same['p50_ms'] / base['p50_ms']:.2f}, p95 ratio "
                  f"{same['p95_ms'] / base['p95_ms']:.2f}, CPU per call-second ratio "
                  f"{(same['cpu_per_call_s'] or 0) / (base['cpu_per_call_s'] or 1):.2f}.", ""]
    holding = [r for r in rows if r["label"] == "edge" and r["p95_ms"] is not None
               and r["p95_ms"] <= 1000 and not r["records_missing"] and r["connected"]]
    best = max(holding, key=lambda r: r["connected"], default=None)
    growth = max((r["rss_per_call_mb"] for r in rows if r["rss_per_call_mb"] is not None),
                 default=0)
    inclusive = max((r["rss_per_call_since_start_mb"] for r in rows
                     if r["rss_per_call_since_start_mb"] is not None), default=0)
    lines += ["## Against the issue's goals", "",
              "| measure | goal | reached |", "|---|---|---|",
              f"| concurrent calls within budget (p95 <= 1,000 ms raw, 0 lost records) | >= 6 "
              f"| {best['connected'] if best else 'none'}"
              + (f" ({best['workers']} workers, p95 {best['p95_ms']:.0f} ms)" if best else "")
              + " |",
              f"| memory per additional concurrent call | <= 200 MB | "
              f"{growth:.0f} MB over the worker's idle RSS before the run (largest run); "
              f"{inclusive:.0f} MB counting everything since the worker started (first-call "
              "allocations included) |", ""]
    first = rows[0]["idle_memory_mb"] if rows else {}
    if first:
        rss = sum(m["rss"] for m in first.values())
        pss = sum(m["pss"] for m in first.values())
        shared = sum(m["shared"] for m in first.values())
        lines += ["## Memory shared between the workers", "",
                  f"Idle, before the first run: the {len(first)} workers hold {rss:.0f} MB RSS "
                  f"in all, of which {shared:.0f} MB are pages shared with another process "
                  f"(libraries, memory-mapped model files); their PSS sums to {pss:.0f} MB, "
                  "which is what they really cost together. Forking workers from one parent "
                  "after loading the models (copy-on-write) was not attempted: threads do not "
                  "survive a fork, and the models' runtimes start thread pools when they load "
                  "(PyTorch/OpenMP, CTranslate2, onnxruntime), a known cause of hangs in a "
                  "forked child; the SIP stack would also have to be created after the fork. "
                  "Sharing is left to the per-host inference process (models.inference_url), "
                  "which loads the models once for all workers.", ""]
    lines += capacity(rows, budget_ms)
    lines += ["![latency and CPU per run](scale.png)", ""]
    (RESULTS / "scale.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="1x4,1x6,2x6,3x6,3x9",
                        help="WORKERSxCALLS through the edge, comma-separated")
    parser.add_argument("--baseline", type=int, default=4,
                        help="calls straight to one worker (no edge); 0: none")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    from voice.app.settings import IvrSettings

    budget_ms = IvrSettings().budget.total_ms
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        write_report(json.loads((RESULTS / "scale.json").read_text()), budget_ms)
        return 0
    manifest = json.loads((CALLS / "calls.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plan, proc = start_cluster(Path(tmp))
        try:
            edge_uri = f"sip:+18005550100@127.0.0.1:{plan.settings.cluster.edge_port}"
            fresh_rss = {w.index: rss_mb(plan.pid(w)) for w in plan.workers}
            for w in plan.workers:  # one call each first: lazy loads out of the measurement
                run_peer([f"sip:+18005550100@127.0.0.1:{w.sip_port}", "--play",
                          str(CALLS / "two_turns_8k.wav"), "--tail", "2"], timeout_s=120)
            tag = 0
            if args.baseline:
                set_workers(plan, 1)
                worker = plan.workers[0]
                rows.append(run_level(plan, "direct", f"sip:+18005550100@127.0.0.1:"
                                      f"{worker.sip_port}", 1, args.baseline, manifest,
                                      budget_ms, tag, fresh_rss))
                rows[-1]["load_1m"] = round(os.getloadavg()[0], 2)
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "waits_ms"}),
                      flush=True)
            for spec in args.runs.split(","):
                workers, calls = (int(x) for x in spec.split("x"))
                tag += 1
                set_workers(plan, workers)
                time.sleep(1.0)
                rows.append(run_level(plan, "edge", edge_uri, workers, calls, manifest,
                                      budget_ms, tag, fresh_rss))
                rows[-1]["load_1m"] = round(os.getloadavg()[0], 2)
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "waits_ms"}),
                      flush=True)
        finally:
            proc.terminate()
            proc.wait(120)
    (RESULTS / "scale.json").write_text(json.dumps(rows, indent=1))
    write_report(rows, budget_ms)
    print(f"wrote {RESULTS / 'scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
