"""The embedded LLM server: xllamacpp (prebuilt wheel, llama.cpp's C++ server) against
llama-cpp-python (compiled at install, its Python server), both serving the bundled SmolLM2 GGUF,
in one run.

Both servers are started by ``EmbeddedLlmServer`` with the same threads and context, and stay up
side by side; requests alternate between them round by round, so the shared machine's load falls
on both alike. Two workloads, both as the IVR sends them through the OpenAI client:

1. **Streamed reply** (the 'llm' turn handler): system prompt and a caller's sentence, streamed,
   temperature 0. First-token latency = request sent to the first content chunk; decode rate =
   content chunks after the first / the time from the first to the last (each chunk is one token
   on both servers).
2. **Tool request** (the free-form agent): the CRM tool schema, non-streamed, up to 80 tokens.
   Reports whether the tools reached the prompt (its token count against the same request
   without them) and whether ``tool_calls`` came back.

Also: the server's CPU seconds per round (user + system, all its threads: what the shared
machine's load does not inflate, unlike wall time), start time (process spawned to
``GET /v1/models`` answering) and the server's RSS.

    python -m bench.llm_server [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from models.llm_server import EmbeddedLlmServer, server_available

RESULTS = Path(__file__).parent / "results"
KINDS = ("llama-cpp-python", "xllamacpp")  # baseline first
CALLER_SAYS = "Hello, I ordered a phone last week and I would like to know when it arrives."
AGENT_ASKS = "Do you have a store in Paris?"


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"{os.cpu_count()}-core {platform.machine()} VM ({cpu}), CPU only, shared with other "
            f"work; Python {platform.python_version()}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def streamed(client, system: str) -> dict:
    sent = time.perf_counter()
    stream = client.chat.completions.create(
        model="local", max_tokens=30, temperature=0, stream=True,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": CALLER_SAYS}])
    times, text = [], []
    for chunk in stream:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            times.append(time.perf_counter())
            text.append(delta)
    decode_s = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {"first_token_ms": (times[0] - sent) * 1000 if times else float("nan"),
            "tokens": len(times), "tokens_per_s": (len(times) - 1) / decode_s,
            "text": "".join(text)}


def tool_request(client, system: str, tools: list[dict] | None) -> dict:
    extra = {"tools": tools} if tools else {}
    sent = time.perf_counter()
    reply = client.chat.completions.create(
        model="local", max_tokens=80, temperature=0, **extra,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": AGENT_ASKS}])
    return {"ms": (time.perf_counter() - sent) * 1000,
            "prompt_tokens": reply.usage.prompt_tokens if reply.usage else None,
            "completion_tokens": reply.usage.completion_tokens if reply.usage else None,
            "tool_calls": len(reply.choices[0].message.tool_calls or [])}


def pct(values: list[float], q: float) -> float:
    values = sorted(v for v in values if v == v)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def run(rounds: int) -> dict:
    import yaml
    from openai import OpenAI

    from intents.dialogue.agent import PROMPTS
    from intents.dialogue.tools import tool_schema
    from models.registry import shared_registry
    from voice.app.settings import IvrSettings

    gguf = shared_registry().llm_gguf_path()
    system = IvrSettings().call.llm_system_prompt
    agent_system = yaml.safe_load((PROMPTS / "turn_manager-v1.yaml").read_text())["system"]
    threads = os.cpu_count() or 1
    servers, clients, out = {}, {}, {}
    try:
        for kind in KINDS:
            started = time.perf_counter()
            servers[kind] = EmbeddedLlmServer(gguf, n_threads=threads, kind=kind)
            url = servers[kind].start(timeout_s=120)
            clients[kind] = OpenAI(base_url=url, api_key="none", timeout=600, max_retries=0)
            out[kind] = {"start_s": time.perf_counter() - started, "stream": [], "tools": [],
                         "no_tools": []}
            streamed(clients[kind], system)  # warm-up: first request pays page faults
        schema = tool_schema()
        cpu_before = {k: cpu_s(s._process.pid) for k, s in servers.items()}
        for _ in range(rounds):
            for kind in KINDS:
                out[kind]["stream"].append(streamed(clients[kind], system))
                out[kind]["tools"].append(tool_request(clients[kind], agent_system, schema))
        for kind in KINDS:
            out[kind]["cpu_s_per_round"] = (cpu_s(servers[kind]._process.pid)
                                            - cpu_before[kind]) / rounds
            out[kind]["no_tools"].append(tool_request(clients[kind], agent_system, None))
            out[kind]["rss_mb"] = rss_mb(servers[kind]._process.pid)
    finally:
        for server in servers.values():
            server.stop()
    return out


def summarise(out: dict) -> dict:
    summary = {}
    for kind, runs in out.items():
        first = [r["first_token_ms"] for r in runs["stream"]]
        rates = [r["tokens_per_s"] for r in runs["stream"]]
        tools = runs["tools"]
        summary[kind] = {
            "start_s": runs["start_s"], "rss_mb": runs["rss_mb"],
            "cpu_s_per_round": runs.get("cpu_s_per_round", float("nan")),
            "first_token_p50": pct(first, 0.5), "first_token_p95": pct(first, 0.95),
            "tokens_per_s_p50": pct(rates, 0.5), "tokens_per_s_p5": pct(rates, 0.05),
            "tool_request_p50": pct([t["ms"] for t in tools], 0.5),
            "tool_prompt_tokens": tools[0]["prompt_tokens"],
            "plain_prompt_tokens": runs["no_tools"][0]["prompt_tokens"],
            "tool_calls_returned": sum(t["tool_calls"] for t in tools),
            "tool_requests": len(tools),
            "sample_reply": runs["stream"][0]["text"],
        }
    return summary


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    kinds = list(out)
    a.boxplot([[r["first_token_ms"] for r in out[k]["stream"]] for k in kinds], tick_labels=kinds)
    a.set_ylabel("ms")
    a.set_title("first token (streamed reply)")
    b.boxplot([[r["tokens_per_s"] for r in out[k]["stream"]] for k in kinds], tick_labels=kinds)
    b.set_ylabel("tokens/s")
    b.set_title("decode rate")
    fig.suptitle("SmolLM2-135M Q4_1, same run, alternating requests")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(summary: dict, rounds: int, load: tuple[float, float]) -> str:
    base, ours = summary["llama-cpp-python"], summary["xllamacpp"]

    def row(label: str, key: str, fmt: str) -> str:
        ratio = ours[key] / base[key] if base[key] else float("nan")
        return (f"| {label} | {format(base[key], fmt)} | {format(ours[key], fmt)} | "
                f"{ratio:.2f} |")

    lines = [
        "# Embedded LLM server: xllamacpp against llama-cpp-python", "",
        f"Machine: {machine()}. Load average at start / end: {load[0]:.1f} / {load[1]:.1f}.",
        "Command: `python -m bench.llm_server" + (f" --rounds {rounds}`" if rounds != 15 else "`"),
        "",
        f"Both servers load the bundled SmolLM2-135M-Instruct Q4_1 GGUF with {os.cpu_count()} "
        "threads and a 2048-token context, run side by side, and take requests in turn "
        f"({rounds} rounds of each workload after one warm-up request). Ratio = xllamacpp / "
        "llama-cpp-python. On a machine loaded by other work (load average well above its "
        "cores) the absolute times are far from an idle machine's and vary widely; the ratios, "
        "from requests interleaved under the same load, are what this run compares. "
        "Percentiles are nearest-rank.", "",
        "| measure | llama-cpp-python (baseline) | xllamacpp | ratio |", "|---|---|---|---|",
        row("first token, p50 (ms)", "first_token_p50", ".0f"),
        row("first token, p95 (ms)", "first_token_p95", ".0f"),
        row("decode rate, p50 (tokens/s)", "tokens_per_s_p50", ".1f"),
        row("decode rate, p5 (tokens/s)", "tokens_per_s_p5", ".1f"),
        row("tool request, 80 tokens, p50 (ms)", "tool_request_p50", ".0f"),
        *([row("server CPU per round (s, user + system, both requests)", "cpu_s_per_round",
               ".1f")] if ours["cpu_s_per_round"] == ours["cpu_s_per_round"] else []),
        row("start to first answer of /v1/models (s)", "start_s", ".2f"),
        row("server RSS after the run (MB)", "rss_mb", ".0f"), "",
        "## Tool calls", "",
        "| | llama-cpp-python | xllamacpp |", "|---|---|---|",
        f"| prompt tokens with / without the tool schema | {base['tool_prompt_tokens']} / "
        f"{base['plain_prompt_tokens']} | {ours['tool_prompt_tokens']} / "
        f"{ours['plain_prompt_tokens']} |",
        f"| `tool_calls` returned | {base['tool_calls_returned']} of {base['tool_requests']} | "
        f"{ours['tool_calls_returned']} of {ours['tool_requests']} |", "",
        "Both accept the OpenAI `tools` request the free-form agent sends. SmolLM2-135M's chat "
        "template has no tools section, so neither server puts the schema in the prompt (same "
        "token count with and without it) and neither returns `tool_calls`: the agent then "
        "checks the plain text against the facts, as before. xllamacpp renders the GGUF's own "
        "template with Jinja (llama.cpp's server), which parses tool calls for templates that "
        "define them; llama-cpp-python needs a `--chat_format` naming a function-calling format. "
        "Not tried here: no tool-capable GGUF is installable offline.", "",
        "Sample replies (temperature 0):", "",
        f"- llama-cpp-python: {base['sample_reply']!r}",
        f"- xllamacpp: {ours['sample_reply']!r}", "",
        "## Installing", "",
        "xllamacpp is a 34 MB prebuilt manylinux wheel (x86-64 AVX2 build, no AVX-512, no "
        "`-march=native`): pip installs it in seconds. llama-cpp-python 0.3.36 is an sdist that "
        "pip compiles (cmake, the whole of llama.cpp) on every fresh machine: most of the 548 s "
        "that `make demo` took there. See the fresh-clone `make demo` timing in deploy/README.md.",
        "", "![first token and decode rate](llm_server.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--report-only", action="store_true",
                        help="write the report and plot again from results/llm_server.json")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((RESULTS / "llm_server.json").read_text())
        load = tuple(saved.get("load", (float("nan"), float("nan"))))
        write_report(saved["runs"], saved["rounds"], load)
        return
    missing = [k for k in KINDS if not server_available(k)]
    if missing:
        raise SystemExit(f"not installed: {', '.join(missing)} (pip install -e "
                         "'.[llama-cpp-python]' for the baseline)")
    load_start = os.getloadavg()[0]
    out = run(args.rounds)
    load = (load_start, os.getloadavg()[0])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llm_server.json").write_text(json.dumps(
        {"machine": machine(), "rounds": args.rounds, "load": load,
         "summary": summarise(out), "runs": out}, indent=1, default=float))
    write_report(out, args.rounds, load)


def write_report(out: dict, rounds: int, load: tuple[float, float]) -> None:
    plot(out, RESULTS / "llm_server.png")
    text = report(summarise(out), rounds, (load[0], load[1]))
    (RESULTS / "llm_server.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
