"""A worker's memory with its own models and with the host's inference tier, in one run.

    .venv/bin/python -m bench.worker_memory [--calls 2]

Starts `ivr serve` with each handler (echo; the turn manager, which adds the intent classifier)
twice: with every model in the process (the embedded default), and with
``models.inference_url`` pointing at an `ivr inference` process started here. For each, the
worker's resident memory (VmRSS from /proc) is read once it answers /healthz, and again after
``--calls`` pjsua2 calls of the two-turn recording; the tier's own RSS is read beside it.
Writes bench/results/worker_memory.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import IvrProcess, run_peer
from bench.latency import machine
from bench.scale import rss_mb

ROOT = Path(__file__).resolve().parent.parent
CALLS = ROOT / "tests" / "fixtures" / "calls"
RESULTS = ROOT / "bench" / "results"
HANDLERS = ("echo", "manager")


def start_tier(socket: Path, log: Path) -> subprocess.Popen:
    from voice.app.settings import IvrSettings
    from voice.inference.client import InferenceClient

    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    process = subprocess.Popen([sys.executable, "-m", "voice.app.cli", "inference", "--bind",
                                f"unix:{socket}"], cwd=ROOT, env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    client = InferenceClient(f"unix:{socket}", IvrSettings())
    deadline = time.monotonic() + 300
    try:
        while not client.wait_ready(1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ivr inference did not start:\n{log.read_text()[-2000:]}")
    finally:
        client.close()
    return process


def measure(workdir: Path, config: dict, calls: int) -> dict:
    workdir.mkdir(parents=True)
    if config["call"]["handler"] == "manager":
        crm = workdir / "crm.sqlite"
        subprocess.run([sys.executable, "-m", "voice.app.cli", "crm", "seed", "--crm",
                        f"sqlite:///{crm}"], cwd=ROOT, check=True, capture_output=True)
        config = {**config, "call": {**config["call"], "crm_url": f"sqlite:///{crm}"}}
    server = IvrProcess(workdir, config).start(timeout_s=300)
    try:
        time.sleep(2.0)  # let the start settle (warm-up threads, first GC)
        idle = rss_mb(server.proc.pid)
        for i in range(calls):
            run_peer([server.uri, "--play", str(CALLS / "two_turns_8k.wav"), "--wait", "1.0",
                      "--tail", "3", "--caller-id", f"+1555700{i:04d}"], timeout_s=120)
        time.sleep(1.0)
        return {"idle_mb": round(idle, 1), "after_calls_mb": round(rss_mb(server.proc.pid), 1)}
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2)
    args = parser.parse_args()
    started = time.time()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for handler in HANDLERS:
            rows[f"{handler}, in process"] = measure(
                folder / f"{handler}-in-process", {"call": {"handler": handler}}, args.calls)
        tier = start_tier(folder / "inference.sock", folder / "tier.log")
        try:
            for handler in HANDLERS:
                rows[f"{handler}, with the tier"] = measure(folder / f"{handler}-with-tier", {
                    "call": {"handler": handler},
                    "models": {"inference_url": f"unix:{folder / 'inference.sock'}"}},
                    args.calls)
            tier_mb = round(rss_mb(tier.pid), 1)
        finally:
            tier.terminate()
            tier.wait(30)
    out = {"machine": machine(), "calls": args.calls, "seconds": round(time.time() - started),
           "workers": rows, "tier_mb": tier_mb}
    RESULTS.mkdir(parents=True, exist_ok=True)

    def idle(name: str) -> float:
        return rows[name]["idle_mb"]

    (RESULTS / "worker_memory.json").write_text(json.dumps(out, indent=1))
    lines = ["# Worker memory: models in the process vs the host's inference tier", "",
             f"Machine: {out['machine']}. Reproduce: `.venv/bin/python -m bench.worker_memory "
             f"--calls {args.calls}`. Resident memory (VmRSS) of `ivr serve`, read once /healthz "
             f"answers and after {args.calls} calls of the two-turn recording over SIP (pjsua2). "
             "Run took "
             f"{out['seconds']} s.", "",
             "| handler | models | idle MB | after the calls MB |", "|---|---|---:|---:|",
             *[f"| {name.split(', ')[0]} | {name.split(', ')[1]} | {row['idle_mb']:.0f} | "
               f"{row['after_calls_mb']:.0f} |" for name, row in rows.items()], "",
             f"The tier itself, after serving those calls: {tier_mb:.0f} MB (one per host, "
             "shared by every worker on it).", "",
             *[f"Ratio with the tier / in process, idle, {h}: "
               f"{idle(f'{h}, with the tier') / idle(f'{h}, in process'):.2f}."
               for h in HANDLERS], ""]
    (RESULTS / "worker_memory.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
