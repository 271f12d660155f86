"""Issue 13's goal table: caller-side waits over SIP at C = 1, 2, 3, before and after, beside stock
pipecat with Smart Turn v3.2, all in one run.

    .venv/bin/python -m bench.turn_latency --old /tmp/wt_old [--levels 1,2,3] [--rounds 2]

``--old`` is a checkout of an earlier commit (``git worktree add /tmp/wt_old <commit>``); its
`ivr serve` runs from there with the same venv and models, interleaved level by level with ours,
so both see the same machine load. Per level C:

- ordinary turns: C pjsua2 callers at a time play the bench recordings (real speakers, 8 kHz
  G.711 over RTP) to `ivr serve` with the echo handler; ``rounds`` x C calls;
- digit-string turns: C callers at a time play order_status_8k to `ivr serve` with the turn
  manager (order question, the six-digit order number read with pauses, "yes"); the wait after
  the number's last digit is reported on its own;
- stock pipecat (bench/stock_pipecat.py: Whisper tiny.en, Piper joe, Silero VAD, Smart Turn v3.2
  to stop, pipecat's defaults) plays the same recordings, C at a time, in this process. It has no
  SIP leg (its reply onset is taken at its output transport), which favours it by the RTP path.

Latency is raw: end of the caller's speech (by level, calls.json) to the first audible reply
sample, nothing excluded. Also measured: Smart Turn's own cost on this machine. Writes
bench/results/turn_latency.{md,png,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import PYTHON, IvrProcess, run_peer
from bench.latency import machine
from bench.sip_bench import call_latencies, percentile

ROOT = Path(__file__).resolve().parent.parent
CALLS = ROOT / "tests" / "fixtures" / "calls"
RESULTS = ROOT / "bench" / "results"
ORDINARY = ["bench_librivox_8k", "bench_ljspeech_8k", "bench_cards_8k", "two_turns_8k"]
DIGITS_CALL, DIGITS_UTTERANCE = "order_status_8k", 1  # "4 5 6 7 1 2" read with pauses


class TreeIvrProcess(IvrProcess):
    """`ivr serve` from another checkout (an earlier commit), same interpreter and models."""

    def __init__(self, tree: Path, workdir: Path, config: dict) -> None:
        super().__init__(workdir, config)
        self.tree = tree

    def start(self, timeout_s: float = 180.0) -> IvrProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(self.tree)}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, cwd=self.tree, env=env, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True)
        return self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> IvrProcess:
        import threading

        deadline = time.time() + timeout_s
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if "ivr serve: ready" in line:
                threading.Thread(target=self._drain_stdout, daemon=True).start()
                return self
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"ivr serve did not start:\n{self.log()}")


def start_server(tree: Path | None, workdir: Path, handler: str, extra: dict | None = None
                 ) -> IvrProcess:
    workdir.mkdir(parents=True)
    config = {"call": {"handler": handler}, "sip": {"max_calls": 4}, **(extra or {})}
    if handler == "manager":
        crm = workdir / "crm.sqlite"
        subprocess.run([PYTHON, "-m", "voice.app.cli", "crm", "seed", "--crm",
                        f"sqlite:///{crm}"], cwd=tree or ROOT, check=True,
                       capture_output=True, env={**os.environ, **(
                           {"PYTHONPATH": str(tree)} if tree else {})})
        config["call"]["crm_url"] = f"sqlite:///{crm}"
    server = TreeIvrProcess(tree, workdir, config) if tree else IvrProcess(workdir, config)
    return server.start()


def sip_calls(server: IvrProcess, names: list[str], concurrency: int) -> list[tuple[str, dict]]:
    def one(i: int) -> tuple[str, dict]:
        return names[i], run_peer([server.uri, "--play", str(CALLS / f"{names[i]}.wav"),
                                   "--wait", "1.0", "--tail", "4", "--caller-id",
                                   f"+1555901{i:04d}", "--timeout", "120"], timeout_s=180)

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(len(names))))


def stock_calls(names: list[str], concurrency: int) -> list[tuple[str, list[float]]]:
    """Stock pipecat on the recordings, ``concurrency`` pipelines at a time in this process."""
    from bench.stock_pipecat import run_stock_pipecat
    from models.registry import shared_registry

    registry = shared_registry()
    manifest = json.loads((CALLS / "calls.json").read_text())
    out: list[tuple[str, list[float]]] = []

    async def one(name: str) -> None:
        result = await run_stock_pipecat(CALLS / f"{name}.wav",
                                         whisper_model=str(registry.whisper_path("tiny.en")),
                                         piper_voice=registry.piper_voice_path())
        out.append((name, aligned_waits(manifest[name]["utterances"], result.feed_start,
                                        result.reply_onsets)))

    async def run_all() -> None:
        for start in range(0, len(names), concurrency):
            await asyncio.gather(*(one(n) for n in names[start:start + concurrency]))

    asyncio.run(run_all())
    return out


def aligned_waits(utterances: list[dict], feed_start: float, onsets: list[float]
                  ) -> list[float | None]:
    """Per utterance, ms to the first reply onset after it ended and before the next one ended
    (None: no reply), in utterance order."""
    waits: list[float | None] = []
    for k, utterance in enumerate(utterances):
        end = feed_start + utterance["end_s"]
        limit = feed_start + utterances[k + 1]["end_s"] if k + 1 < len(utterances) else 1e18
        after = [t for t in onsets if end < t < limit]
        waits.append((after[0] - end) * 1000 if after else None)
    return waits


def smart_turn_cost(runs: int = 30) -> dict:
    """Smart Turn v3.2 on 3 s of real speech at 16 kHz, one thread, as the listen stage runs it."""
    from voice.audio import read_audio, resample
    from voice.smart_turn import SmartTurn

    chunk = read_audio(CALLS / "two_turns_8k.wav")
    audio = resample(chunk.samples, chunk.sample_rate, 16000)[: 3 * 16000]
    model = SmartTurn()
    model.probability(audio)  # load and warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        model.probability(audio)
        times.append((time.perf_counter() - started) * 1000)
    model.close()
    return {"p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95), "runs": runs}


def summarize(waits: list[float | None]) -> dict:
    heard = [w for w in waits if w is not None]
    return {"n": len(waits), "unanswered": len(waits) - len(heard),
            "p50_ms": percentile(heard, 0.5), "p95_ms": percentile(heard, 0.95), "waits": heard}


def git_commit(tree: Path | None) -> str | None:
    """The short commit of a checkout, for the report's `before` column."""
    if tree is None:
        return None
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, help="checkout of an earlier commit")
    parser.add_argument("--levels", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--digit-rounds", type=int, default=1)
    parser.add_argument("--no-stock", action="store_true")
    args = parser.parse_args()
    manifest = json.loads((CALLS / "calls.json").read_text())
    levels = [int(x) for x in args.levels.split(",")]
    started = time.time()
    # name -> (checkout, extra settings); "ours, no speculation" measures that lever alone.
    systems = {"ours": (None, None),
               "ours, no speculation": (None, {"turn": {"speculative_reply": False}}),
               **({"before": (args.old.resolve(), None)} if args.old else {})}
    rows: list[dict] = []
    load_before = os.getloadavg()
    cost = smart_turn_cost()
    print(f"smart turn: {cost}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        servers: dict[tuple[str, str], IvrProcess] = {}
        try:
            for n, (name, (tree, extra)) in enumerate(systems.items()):
                for handler in ("echo", "manager"):
                    servers[name, handler] = start_server(tree, Path(tmp) / f"{n}-{handler}",
                                                          handler, extra)
                    run_peer([servers[name, handler].uri, "--play",
                              str(CALLS / "two_turns_8k.wav"), "--tail", "2"])  # warm up
            for level in levels:
                names = [ORDINARY[i % len(ORDINARY)] for i in range(level * args.rounds)]
                digit_names = [DIGITS_CALL] * (level * args.digit_rounds)
                for name in systems:
                    waits = []
                    for call, result in sip_calls(servers[name, "echo"], names, level):
                        waits += call_latencies(result, manifest[call]["utterances"],
                                                keep_gaps=True)[0]
                    rows.append({"system": name, "kind": "ordinary", "C": level,
                                 **summarize(waits)})
                    digits, others = [], []
                    for call, result in sip_calls(servers[name, "manager"], digit_names, level):
                        w = call_latencies(result, manifest[call]["utterances"],
                                           keep_gaps=True)[0]
                        digits.append(w[DIGITS_UTTERANCE])
                        others += [x for i, x in enumerate(w) if i != DIGITS_UTTERANCE]
                    rows.append({"system": name, "kind": "digits", "C": level,
                                 **summarize(digits)})
                    rows.append({"system": name, "kind": "manager-other", "C": level,
                                 **summarize(others)})
                    print(json.dumps({k: v for k, v in rows[-3].items() if k != "waits"}),
                          json.dumps({k: v for k, v in rows[-2].items() if k != "waits"}),
                          flush=True)
                if not args.no_stock:
                    waits = [w for _, ws in stock_calls(names, level) for w in ws]
                    rows.append({"system": "stock", "kind": "ordinary", "C": level,
                                 **summarize(waits)})
                    digits = [ws[DIGITS_UTTERANCE] for _, ws in stock_calls(digit_names, level)]
                    rows.append({"system": "stock", "kind": "digits", "C": level,
                                 **summarize(digits)})
                    print(json.dumps({k: v for k, v in rows[-2].items() if k != "waits"}),
                          flush=True)
            records = {name: servers[name, "echo"].calls(limit=200) +
                       servers[name, "manager"].calls(limit=200) for name in systems}
        finally:
            for server in servers.values():
                server.stop()
    smart = [t["smart_turn_ms"] for c in records.get("ours", []) for t in c.get("turns", [])
             if t.get("smart_turn_ms") is not None]
    rules: dict[str, int] = {}
    for c in records.get("ours", []):
        for t in c.get("turns", []):
            rule = t.get("end_rule", "?")
            rules[rule] = rules.get(rule, 0) + 1
    speculation = {"used": 0, "missed": 0, "none": 0, "discarded": 0}
    for c in records.get("ours", []):
        for t in c.get("turns", []):
            speculation[t.get("speculation") or "none"] += 1
            speculation["discarded"] += t.get("speculations_discarded", 0)
    stages: dict[str, dict[str, list[float]]] = {}
    for c in records.get("ours", []):
        for t in c.get("turns", []):
            kind = "value turns" if t.get("end_rule", "").startswith("value") else "other turns"
            for stage, ms in (t.get("stages") or {}).items():
                stages.setdefault(kind, {}).setdefault(stage, []).append(ms)
    out = {"machine": machine(), "load": [round(x, 1) for x in load_before + os.getloadavg()],
           "stages": {
               kind: {k: [percentile(v, 0.5), percentile(v, 0.95), len(v)] for k, v in d.items()}
               for kind, d in stages.items()},
           "seconds": round(time.time() - started), "rows": rows,
           "smart_turn_cost": cost, "smart_turn_in_calls_ms": {
               "p50": percentile(smart, 0.5), "p95": percentile(smart, 0.95), "n": len(smart)},
           "end_rules": rules, "speculation": speculation, "levels": levels, "rounds": args.rounds,
           "digit_rounds": args.digit_rounds, "old_commit": git_commit(args.old)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "turn_latency.json").write_text(json.dumps(out, indent=1))
    write_report(out)
    print((RESULTS / "turn_latency.md").read_text())
    return 0


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def write_report(out: dict) -> None:
    rows = out["rows"]

    def get(system: str, kind: str, level: int) -> dict | None:
        return next((r for r in rows if r["system"] == system and r["kind"] == kind and
                     r["C"] == level), None)

    def pooled(system: str, kind: str, q: float) -> float | None:
        waits = [w for r in rows if r["system"] == system and r["kind"] == kind
                 for w in r["waits"]]
        return percentile(waits, q)

    levels = out["levels"]
    lines = ["# Issue 13: caller-side latency before and after, beside stock pipecat + Smart Turn",
             "", f"Machine: {out['machine']}. CPU only. Load average (1, 5, 15 min) at the start "
             f"{out['load'][:3]}, at the end {out['load'][3:]}. Run took {out['seconds']} s.",
             "",
             "Reproduce: `.venv/bin/python -m bench.turn_latency "
             f"--levels {','.join(map(str, levels))} --rounds {out['rounds']} --digit-rounds "
             f"{out.get('digit_rounds', 1)}` (add `--old <checkout of an earlier commit>` for the "
             "`before` column; empty when not given).", "",
             "Raw waits at the caller (end of speech by level -> first audible reply sample over "
             f"RTP), nothing excluded. `before` is `ivr serve` at commit "
             f"{out.get('old_commit') or '-'} (the `--old` checkout), run "
             "interleaved with ours in the same session. Stock pipecat runs in-process without "
             "a SIP leg (bench/stock_pipecat.py).", "", "## Goal table", "",
             "| measure | before | after | after, no speculation | stock pipecat + Smart Turn "
             "| goal |", "|---|---:|---:|---:|---:|---|"]
    systems = ("before", "ours", "ours, no speculation", "stock")
    for kind, key, what, goal in (("ordinary", "p50_ms", "ordinary turns p50", "<= 500"),
                                  ("ordinary", "p95_ms", "ordinary turns p95 raw", "<= 800"),
                                  ("digits", "p50_ms", "after the last digit, p50", "<= 600"),
                                  ("digits", "p95_ms", "after the last digit, p95", "")):
        for level in levels:
            cells = [get(x, kind, level) for x in systems]
            lines.append(f"| {what}, C={level} (ms) | " + " | ".join(
                _cell(c and c[key]) for c in cells) + f" | {goal} |")
    ours50, ours95 = pooled("ours", "ordinary", 0.5), pooled("ours", "ordinary", 0.95)
    stock50, stock95 = pooled("stock", "ordinary", 0.5), pooled("stock", "ordinary", 0.95)
    if ours50 and stock50:
        lines.append(f"| ratio to stock, p50 / p95 (all levels pooled) | | "
                     f"{ours50 / stock50:.2f} / {ours95 / stock95:.2f} | | 1 | <= 0.7 / <= 0.5 |")
    before50 = pooled("before", "ordinary", 0.5)
    if before50 and stock50:
        before95 = pooled("before", "ordinary", 0.95)
        lines.append(f"| ratio before / stock, p50 / p95 | {before50 / stock50:.2f} / "
                     f"{before95 / stock95:.2f} | | | | |")
    lines += ["", "False cut-offs on digit strings: tests/test_turn_false_cutoffs.py (50 FSDD "
              "order numbers, pauses 0.3-1.0 s, mu-law, real pipeline).", "",
              "## All rows", "", "| system | turns | C | n | unanswered | p50 ms | p95 ms |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['kind']} | {r['C']} | {r['n']} | {r['unanswered']} "
                     f"| {_cell(r['p50_ms'])} | {_cell(r['p95_ms'])} |")
    cost, smart = out["smart_turn_cost"], out["smart_turn_in_calls_ms"]
    lines += ["", "## Smart Turn v3.2 cost here", "",
              f"- alone, one thread, 3 s of speech: p50 {_cell(cost['p50_ms'])} ms, p95 "
              f"{_cell(cost['p95_ms'])} ms ({cost['runs']} runs);",
              f"- inside calls (queue wait included, beside ASR at the early pause): p50 "
              f"{_cell(smart['p50'])} ms, p95 {_cell(smart['p95'])} ms over {smart['n']} "
              "early pauses" + (" (Smart Turn is off by default: `turn.smart_turn`)."
                               if not smart["n"] else "."), "",
              "## Our stages (turn records; value turns: ended by an expected value)", "",
              "| turns | stage | p50 ms | p95 ms | n |", "|---|---|---:|---:|---:|",
              *[f"| {kind} | {stage} | {_cell(v[0])} | {_cell(v[1])} | {v[2]} |"
                for kind, d in out["stages"].items() for stage, v in d.items()], "",
              "End rules of our turns (turn records): " + ", ".join(
                  f"{k} {v}" for k, v in sorted(out["end_rules"].items())), "",
              "Speculative replies in our turns (turn records): " + ", ".join(
                  f"{k} {v}" for k, v in out.get("speculation", {}).items()) +
              " (used: the prepared first clause was played; missed: the reply opened "
              "otherwise; none: nothing prepared (the turn was confirmed as its transcript "
              "came, as a complete value is, or the handler makes no guess: an LLM, a write); "
              "discarded: prepared and "
              "thrown away because the caller went on).", "",
              "![turn latency](turn_latency.png)", ""]
    (RESULTS / "turn_latency.md").write_text("\n".join(lines))
    plot(out)


def plot(out: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = out["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, kind, goal in ((axes[0], "ordinary", 500), (axes[1], "digits", 600)):
        data, labels = [], []
        for level in out["levels"]:
            for system in ("before", "ours", "ours, no speculation", "stock"):
                r = next((r for r in rows if r["system"] == system and r["kind"] == kind and
                          r["C"] == level), None)
                if r and r["waits"]:
                    data.append(r["waits"])
                    labels.append(f"{system.replace(', ', chr(10))}\nC={level}")
        if data:
            ax.boxplot(data, showfliers=True)
            ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax.axhline(goal, color="g", ls="--", lw=1, label=f"goal {goal} ms (p50)")
        ax.set_ylabel("caller wait, ms")
        ax.set_title("ordinary turns" if kind == "ordinary" else "after the last digit")
        ax.legend(fontsize=8)
    fig.suptitle(f"Caller-side latency over SIP ({out['machine'].split(':')[0]})")
    fig.tight_layout()
    fig.savefig(RESULTS / "turn_latency.png", dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
