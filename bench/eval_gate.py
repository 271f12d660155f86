"""The spoken regression gate on the shipped cohort: how long it takes, what the shipped menu
scores, and whether it catches two deliberately broken candidates.

    .venv/bin/python -m bench.eval_gate [--jobs 2] [--also DIR]

Runs the full cohort (cohorts/retail_billing) through the call core for the working flow
bundle (the baseline), then for two broken candidates, each compared with the baseline as
`ivr eval` does (calls that changed are rerun on both; one that does not reproduce is left
out): one intent's examples cut to its first ("billing_question": "I have a question about my
bill"), and the routing threshold raised
(high_confidence 0.97, per-intent thresholds dropped). The working bundle's run time is the
gate's as CI runs it (candidate and baseline the same content: the cohort runs once). The
working bundle also runs with ASR unprimed (``asr.speech_hints: false``), and with the
classifier's former default out-of-scope score (``rejection_score: blend``; ``contrast`` is the
default now), the levers measured beside it in the same run. ``--also DIR`` runs it on a
diagnostic copy of the cohort too: ``make_cohort.py SPEECH --piper DIR`` has the same calls and
channel with the synthesized callers in re-timbred Piper voices (bench/voices.py) instead of
espeak-ng's formant voices, which tells the ASR's share of the failures from the rest.

Writes bench/results/eval_gate.md, eval_gate.json and eval_gate.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.latency import machine
from intents.flows.bundle import FlowBundle, working_bundle
from intents.flows.cohort import load_cohort
from intents.flows.scoring import Tolerances, compare, metrics, per_intent
from voice.app.eval import BundleRun, _unstable, demo_crm_url, prepare, run_bundle
from voice.app.handlers import HandlerFactory, model_choices
from voice.app.settings import IvrSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COHORT = ROOT / "cohorts" / "retail_billing"
RATES = ("task_completion", "intent_accuracy", "routing_accuracy", "escalation_accuracy",
         "containment", "containment_self_service", "tool_accuracy")


def broken(bundle: FlowBundle, *, drop_examples: str | None = None,
           high: float | None = None) -> FlowBundle:
    menu = bundle.menu.model_copy(deep=True)
    if drop_examples:
        spec = menu.by_name(drop_examples)
        spec.examples = spec.examples[:1]
    if high is not None:
        menu.high_confidence = high
        for spec in menu.intents:
            spec.threshold = None
    out = FlowBundle(version="", menu=menu, prompt=bundle.prompt, tools=bundle.tools,
                     models=bundle.models)
    out.version = f"broken+{out.digest[:8]}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="a diagnostic copy of the cohort (make_cohort.py --clean DIR or "
                        "--piper DIR: the same calls in other voices or channel) to run the "
                        "working bundle on too")
    args = parser.parse_args()
    settings = IvrSettings()
    cohort = load_cohort(COHORT)
    prepared, _ = prepare(cohort)
    working = working_bundle(settings.call.menu, model_choices(settings))
    candidates = {"examples removed (billing_question cut to its first)":
                  broken(working, drop_examples="billing_question"),
                  "threshold raised (high_confidence 0.97)": broken(working, high=0.97)}
    runs, seconds, factories = {}, {}, {}
    base_name = "working (shipped menu)"
    unprimed_name = "working, ASR unprimed (asr.speech_hints false)"
    blend_name = "working, blend score (rejection_score: blend)"
    blend = FlowBundle(version="", menu=working.menu.model_copy(
        update={"rejection_score": "blend"}), prompt=working.prompt, tools=working.tools,
        models=working.models)
    blend.version = f"blend+{blend.digest[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        settings.call.crm_url = demo_crm_url(Path(tmp))
        unprimed = settings.model_copy(update={"asr": settings.asr.model_copy(
            update={"speech_hints": False})})
        for name, bundle, run_settings in [(base_name, working, settings),
                                           (unprimed_name, working, unprimed),
                                           (blend_name, blend, settings),
                                           *((n, b, settings) for n, b in candidates.items())]:
            started = time.perf_counter()
            factories[name] = HandlerFactory(run_settings, bundle)
            runs[name] = asyncio.run(run_bundle(prepared, factories[name], run_settings,
                                                realtime=False, jobs=args.jobs))
            seconds[name] = time.perf_counter() - started
            print(f"{name}: {seconds[name]:.0f} s", flush=True)
        for folder in args.also:  # the same calls and expectations, other recordings
            variant = load_cohort(folder)
            if [c.id for c in variant.calls] != [c.id for c in cohort.calls]:
                raise SystemExit(f"{folder}: not a copy of {COHORT} (other calls)")
            name = f"working, cohort {variant.cohort}"
            started = time.perf_counter()
            factories[name] = HandlerFactory(settings, working)
            runs[name] = asyncio.run(run_bundle(prepare(variant)[0], factories[name], settings,
                                                realtime=False, jobs=args.jobs))
            seconds[name] = time.perf_counter() - started
            print(f"{name}: {seconds[name]:.0f} s", flush=True)
        base = runs[base_name]
        verdicts = {}
        for name, bundle in candidates.items():  # as `ivr eval` judges: changed calls rerun
            first = compare(cohort.calls, base, runs[name], Tolerances())
            both = {"baseline": factories[base_name], "candidate": factories[name]}
            unstable = _unstable([c["id"] for c in first.changed], prepared, both,
                                 {"baseline": BundleRun(working, base, 0.0),
                                  "candidate": BundleRun(bundle, runs[name], 0.0)},
                                 settings, False, args.jobs) if first.changed else set()
            verdicts[name] = compare(cohort.calls, base, runs[name], Tolerances(), unstable)
    data = {"machine": machine(), "load_average": os.getloadavg(), "calls": len(cohort.calls),
            "jobs": args.jobs, "seconds": seconds, "also": [str(d) for d in args.also],
            "metrics": {n: metrics(cohort.calls, o) for n, o in runs.items()},
            "per_intent": {n: per_intent(cohort.calls, o) for n, o in runs.items()},
            "verdicts": {n: {"passed": v.passed, "regressions": v.regressions,
                             "changed": v.changed, "unstable": v.unstable}
                         for n, v in verdicts.items()},
            "calls_detail": {cid: o.to_dict() for cid, o in base.items()},
            "also_detail": {name: {cid: o.to_dict() for cid, o in runs[name].items()}
                            for name in runs if name.startswith("working, cohort ")}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval_gate.json").write_text(json.dumps(data, indent=1, default=str))
    write_markdown(data, base_name)
    plot(data)


def write_markdown(data: dict, base_name: str) -> None:
    m = data["metrics"]
    names = list(m)
    lines = ["# The spoken regression gate on the shipped cohort", "",
             f"Machine: {data['machine']}; load average during the run "
             f"{', '.join(f'{x:.1f}' for x in data['load_average'])} (shared with other "
             f"work). {data['calls']} calls, {data['jobs']} at once, faster than real time "
             "(waits below are processing times under that load, not what a caller hears).",
             "", "Reproduce: `.venv/bin/python -m bench.eval_gate"
             + "".join(f" --also {d}" for d in data.get("also", []))
             + "`; the gate itself: `ivr eval cohorts/retail_billing` (`make gate`)."
             + (" The `--also` cohorts are the shipped calls rebuilt by "
                "`cohorts/retail_billing/make_cohort.py SPEECH_DIR --piper DIR` (or `--clean`): "
                "same scripts, expectations and channel draws, other voices."
                if data.get("also") else ""), "",
             "| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for rate in RATES:
        lines.append(f"| {rate} | " + " | ".join(
            "-" if m[n][rate] is None else f"{m[n][rate]:.1%}" for n in names) + " |")
    for key in ("latency_p50_ms", "latency_p95_ms"):
        lines.append(f"| {key} | " + " | ".join(f"{m[n][key]:.0f}" for n in names) + " |")
    lines.append("| run time (s) | " + " | ".join(f"{data['seconds'][n]:.0f}" for n in names)
                 + " |")
    lines += ["", "## Per intent, task completion (shipped menu)", "",
              "| intent | calls | completed |", "|---|---|---|"]
    for intent, pi in data["per_intent"][base_name].items():
        lines.append(f"| {intent} | {pi['calls']} | {pi['task_completion']:.0%} |")
    lines += ["", "## The broken candidates against the shipped menu", ""]
    for name, v in data["verdicts"].items():
        lines.append(f"**{name}**: {'passed (NOT caught)' if v['passed'] else 'FAILED'}; "
                     + "; ".join(v["regressions"]))
        if v["unstable"]:
            lines.append(f"(left out, a rerun of the same bundle did not reproduce them: "
                         f"{', '.join(v['unstable'])})")
        for c in v["changed"]:
            lines.append(f"- `{c['id']}`{' (worse)' if c['got_worse'] else ''}: "
                         f"{c['baseline']} -> {c['candidate']}")
        lines.append("")
    for title, detail in [("the shipped menu", data["calls_detail"]),
                          *((f"the shipped menu on {name.removeprefix('working, cohort ')}",
                             calls) for name, calls in data.get("also_detail", {}).items())]:
        lines += [f"## Calls {title} did not complete, and what ASR heard", ""]
        for cid, c in detail.items():
            if not c["completed"]:
                failed = ", ".join(k for k, ok in c["checks"].items() if not ok)
                lines.append(f"- `{cid}` ({failed}): heard {c['heard']}")
        lines.append("")
    (RESULTS / "eval_gate.md").write_text("\n".join(lines) + "\n")


def plot(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(data["metrics"])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = np.arange(len(RATES))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [data["metrics"][name][r] or 0 for r in RATES]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, [r.replace("_", "\n") for r in RATES], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate")
    ax.set_title(f"Spoken cohort ({data['calls']} calls): shipped menu, its levers, broken "
                 "candidates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "eval_gate.png", dpi=110)


if __name__ == "__main__":
    main()
