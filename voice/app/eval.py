"""`ivr eval`: a spoken cohort through the real call core, for a candidate flow bundle and a
baseline, scored and compared.

Every call is a ``ScriptedLine`` (the caller's recordings and keys, each after the IVR's reply)
answered by the same ``Call`` as a phone call, with a fresh turn manager of the bundle under
test, against a freshly seeded demo CRM. Faster than real time by default: stream time stands
still while the pipeline works, so the turns are those of a real-time call, but the waits are
processing times, not what a caller would hear; ``realtime=True`` measures those, at the price
of the cohort's full duration.

Two bundles with the same content digest behave alike on the same code: the cohort then runs
once and serves as both. The pipeline is not bit-for-bit repeatable on noisy audio (where it cuts
a turn can move by a frame with thread timing, and Whisper then hears other words), so every
call that changed is rerun on both bundles, and one whose rerun does not reproduce its result is
left out of the comparison and reported as unstable.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from intents.config import OUT_OF_SCOPE
from intents.flows.bundle import FlowBundle
from intents.flows.cohort import CONTAINED, Cohort, CohortCall, CohortError
from intents.flows.scoring import (
    CallOutcome,
    Tolerances,
    Verdict,
    check_call,
    compare,
    outcome_key,
)
from intents.flows.scoring import metrics as cohort_metrics
from intents.flows.scoring import per_intent as intent_metrics
from voice.app.call import Call
from voice.app.handlers import HandlerFactory
from voice.app.settings import IvrSettings
from voice.audio import AudioChunk, read_audio
from voice.transports.base import LineInfo
from voice.transports.scripted import ScriptedLine, ScriptStep

RATE = 8000  # the cohort is telephone audio


@dataclass
class PreparedCall:
    call: CohortCall
    steps: list[ScriptStep]


@dataclass
class BundleRun:
    bundle: FlowBundle
    outcomes: dict[str, CallOutcome]
    seconds: float
    reused_from: str | None = None  # "candidate" when the baseline had the same content


@dataclass
class EvalResult:
    cohort: Cohort
    cohort_digest: str
    candidate: BundleRun
    baseline: BundleRun
    verdict: Verdict
    realtime: bool
    seconds: float
    report: dict[str, Any] = field(default_factory=dict)


def prepare(cohort: Cohort) -> tuple[list[PreparedCall], str]:
    """Every recording decoded and checked before any call runs; the cohort's digest (the
    expectations file and every recording). Raises ``CohortError`` naming file and line."""
    problems, prepared = [], []
    digest = hashlib.sha256(cohort.path.read_bytes() if cohort.path else b"")
    cache: dict[Path, AudioChunk] = {}
    for call in cohort.calls:
        parts: list[tuple[str, AudioChunk | str, float]] = []
        for step in call.steps:
            if step.keys is not None:
                parts.append(("keys", step.keys, step.pause_s))
                continue
            path = cohort.recording(step)
            if path not in cache:
                try:
                    cache[path] = read_audio(path)
                    digest.update(path.read_bytes())
                except Exception as error:  # noqa: BLE001 - any decoder error: name the file
                    problems.append(f"{cohort.path}:{step.line}: call {call.id}: recording "
                                    f"{path} cannot be read as audio ({error})")
                    continue
            chunk = cache[path]
            if len(chunk.samples) == 0 or chunk.duration_s < 0.1:
                problems.append(f"{cohort.path}:{step.line}: call {call.id}: recording {path} "
                                f"is empty")
                continue
            parts.append(("say", chunk, step.pause_s))
        prepared.append(PreparedCall(call, ScriptedLine.steps_from(parts, RATE)))
    if problems:
        raise CohortError(problems)
    return prepared, digest.hexdigest()


def observe(call: CohortCall, handler: Any, turns: list, error: str | None) -> CallOutcome:
    """What the turn manager's state says the call did."""
    state = handler.state
    routed = [(r.turn, r.label) for r in state.intents if r.decision == "route"]
    asked = [(s["turn"], "talk_to_human") for s in state.signals if s.get("asks_for_human")]
    first = sorted(routed + asked, key=lambda t: t[0])
    intent = first[0][1] if first else (state.intents[-1].label if state.intents else None)
    route = state.route or CONTAINED
    flow = handler.menu.by_name(intent) if intent and intent != OUT_OF_SCOPE else None
    if state.route:
        outcome = "transferred"
    elif flow is not None and flow.route is not None and flow.route.kind == "self_service" \
            and getattr(handler, "_pending", None) is None:
        outcome = "served"
    else:
        outcome = "unresolved"
    said = [line.text for line in handler.transcript if line.speaker == "ivr"]
    return check_call(call, CallOutcome(
        id=call.id, expected_intent=call.expect.intent, intent=intent, route=route,
        outcome=outcome, slots=dict(state.slots),
        tools=[{"name": a.tool, "args": a.arguments, "ok": a.ok} for a in state.actions],
        said=said, heard=[t.caller_text for t in turns],
        latencies_ms=[round(t.total_ms, 1) for t in turns if t.total_ms is not None],
        error=error))


async def run_call(prepared: PreparedCall, factory: HandlerFactory, settings: IvrSettings,
                   realtime: bool) -> CallOutcome:
    call = prepared.call
    handler = factory.new()
    line = ScriptedLine(prepared.steps, RATE, settings.audio.frame_ms, realtime=realtime,
                        info=LineInfo(transport="recorded", caller_number=call.caller_number),
                        stop=lambda: handler.state.route is not None)
    turns: list = []
    ivr_call = Call(line, settings, handler, None, shutdown=asyncio.Event(), realtime=realtime,
                    on_turn=turns.append, call_id=f"eval-{call.id}")
    error = None
    try:
        await asyncio.wait_for(ivr_call.run(), 600)
    except TimeoutError:
        error = "the call did not end within 600 s"
    if ivr_call.record.end_reason == "error":
        error = "the call failed (see the log)"
    return observe(call, handler, sorted(turns, key=lambda t: t.index), error)


async def run_bundle(prepared: list[PreparedCall], factory: HandlerFactory,
                     settings: IvrSettings, *, realtime: bool, jobs: int,
                     progress=None) -> dict[str, CallOutcome]:
    gate = asyncio.Semaphore(jobs)
    outcomes: dict[str, CallOutcome] = {}

    async def one(p: PreparedCall) -> None:
        async with gate:
            outcomes[p.call.id] = await run_call(p, factory, settings, realtime)
            if progress is not None:
                progress(factory.bundle.version, outcomes[p.call.id])

    await asyncio.gather(*(one(p) for p in prepared))
    return outcomes


def demo_crm_url(folder: Path) -> str:
    """A freshly seeded demo CRM: every run starts from the same data."""
    from handoff.crm import CrmStore, seed

    url = f"sqlite:///{folder}/crm.sqlite"
    seed(CrmStore(url), customers=200)
    return url


def evaluate(cohort: Cohort, candidate: FlowBundle, baseline: FlowBundle,
             settings: IvrSettings, *, tolerances: Tolerances | None = None,
             realtime: bool = False, jobs: int | None = None, only: list[str] | None = None,
             progress=None) -> EvalResult:
    """Run ``cohort`` (or the calls named in ``only``) for both bundles and compare them."""
    started = time.perf_counter()
    if only:
        unknown = sorted(set(only) - {c.id for c in cohort.calls})
        if unknown:
            raise CohortError([f"{cohort.path}: no call named {', '.join(unknown)}"])
        cohort = cohort.model_copy(update={"calls": [c for c in cohort.calls if c.id in only]})
    prepared, digest = prepare(cohort)
    tolerances = tolerances or settings.flows.tolerances
    jobs = jobs or settings.flows.eval_jobs
    with tempfile.TemporaryDirectory(prefix="ivr-eval-") as tmp:
        run_settings = settings.model_copy(deep=True)
        run_settings.call.crm_url = demo_crm_url(Path(tmp))
        run_settings.call.handler = "manager"
        runs: dict[str, BundleRun] = {}
        factories: dict[str, HandlerFactory] = {}
        try:
            for name, bundle in (("candidate", candidate), ("baseline", baseline)):
                if name == "baseline" and bundle.digest == candidate.digest:
                    runs[name] = BundleRun(bundle, runs["candidate"].outcomes, 0.0, "candidate")
                    continue
                t0 = time.perf_counter()
                factories[name] = HandlerFactory(run_settings, bundle)
                outcomes = asyncio.run(run_bundle(prepared, factories[name], run_settings,
                                                  realtime=realtime, jobs=jobs,
                                                  progress=progress))
                runs[name] = BundleRun(bundle, outcomes, time.perf_counter() - t0)
            first = compare(cohort.calls, runs["baseline"].outcomes,
                            runs["candidate"].outcomes, tolerances)
            unstable = set()
            if first.changed and "baseline" in factories:
                unstable = _unstable([c["id"] for c in first.changed], prepared, factories,
                                     runs, run_settings, realtime, jobs)
        finally:
            for factory in factories.values():
                factory.close()
    verdict = compare(cohort.calls, runs["baseline"].outcomes, runs["candidate"].outcomes,
                      tolerances, unstable)
    result = EvalResult(cohort, digest, runs["candidate"], runs["baseline"], verdict, realtime,
                        time.perf_counter() - started)
    result.report = report(result, tolerances)
    logger.info(f"ivr eval: {len(cohort.calls)} calls, {result.seconds:.0f} s, "
                f"{'passed' if verdict.passed else 'FAILED'}")
    return result


def _unstable(changed: list[str], prepared: list[PreparedCall],
              factories: dict[str, HandlerFactory], runs: dict[str, BundleRun],
              settings: IvrSettings, realtime: bool, jobs: int) -> set[str]:
    """Rerun the calls that changed, on both bundles: a call whose rerun does not reproduce
    its first result on either side is unstable (the pipeline segmented its noisy audio
    differently, and Whisper heard something else), not evidence about the flow."""
    again = [p for p in prepared if p.call.id in changed]
    unstable = set()
    for name, factory in factories.items():
        rerun = asyncio.run(run_bundle(again, factory, settings, realtime=realtime, jobs=jobs))
        unstable |= {cid for cid, o in rerun.items()
                     if outcome_key(o) != outcome_key(runs[name].outcomes[cid])}
    if unstable:
        logger.info(f"ivr eval: {len(unstable)} changed call(s) did not reproduce on a rerun "
                    f"and are left out: {', '.join(sorted(unstable))}")
    return unstable


def report(result: EvalResult, tolerances: Tolerances) -> dict[str, Any]:
    """The whole run as JSON: what the store keeps and `--json` prints."""
    calls = result.cohort.calls
    side = lambda run: {  # noqa: E731
        "version": run.bundle.version, "digest": run.bundle.digest, "seconds":
        round(run.seconds, 1), "reused_from": run.reused_from,
        "metrics": cohort_metrics(calls, run.outcomes),
        "per_intent": intent_metrics(calls, run.outcomes),
        "calls": {k: v.to_dict() for k, v in sorted(run.outcomes.items())}}
    return {"cohort": result.cohort.cohort, "cohort_digest": result.cohort_digest,
            "calls": len(calls), "realtime": result.realtime,
            "latency_note": None if result.realtime else "faster than real time: waits are "
            "processing times, not what a caller hears (run with --realtime for those)",
            "seconds": round(result.seconds, 1), "passed": result.verdict.passed,
            "regressions": result.verdict.regressions, "changed": result.verdict.changed,
            "unstable": result.verdict.unstable,
            "tolerances": tolerances.model_dump(),
            "candidate": side(result.candidate), "baseline": side(result.baseline)}


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.1%}"


def render(report: dict[str, Any]) -> str:
    """The report as text for a terminal or a CI log."""
    cand, base = report["candidate"], report["baseline"]
    lines = [f"cohort {report['cohort']}: {report['calls']} calls, {report['seconds']:.0f} s"
             + ("" if report["realtime"] else " (faster than real time)"),
             f"candidate {cand['version']}  baseline {base['version']}"
             + (" (same content: run once)" if base["reused_from"] else ""), ""]
    names = ("task_completion", "intent_accuracy", "routing_accuracy", "escalation_accuracy",
             "containment", "containment_self_service", "tool_accuracy", "latency_ceiling_met")
    lines.append(f"{'':28}{'baseline':>10}{'candidate':>11}")
    for name in names:
        lines.append(f"{name:28}{_pct(base['metrics'][name]):>10}"
                     f"{_pct(cand['metrics'][name]):>11}")
    for name in ("latency_p50_ms", "latency_p95_ms"):
        b, c = base["metrics"][name], cand["metrics"][name]
        lines.append(f"{name:28}{b if b is not None else '-':>10}{c if c is not None else '-':>11}")
    lines += ["", "per intent (task completion, intent accuracy, routing; candidate):"]
    for name, m in cand["per_intent"].items():
        b = base["per_intent"].get(name, {})
        lines.append(f"  {name:22} {m['calls']:2} calls  {_pct(m['task_completion'])} "
                     f"(baseline {_pct(b.get('task_completion'))})  "
                     f"{_pct(m['intent_accuracy'])}  {_pct(m['routing_accuracy'])}")
    if report["latency_note"]:
        lines += ["", f"latency: {report['latency_note']}"]
    failing = [(cid, c) for cid, c in cand["calls"].items() if not c["completed"]]
    if failing:
        lines += ["", f"calls not completed by the candidate ({len(failing)}):"]
        for cid, c in failing:
            failed = [k for k, ok in c["checks"].items() if not ok]
            lines.append(f"  {cid}: {c['error'] or 'failed ' + ', '.join(failed)}; heard "
                         f"{c['heard']}")
    if report.get("unstable"):
        lines += ["", f"left out, a rerun did not reproduce them: {', '.join(report['unstable'])}"]
    if report["changed"]:
        lines += ["", f"calls that changed ({len(report['changed'])}):"]
        for change in report["changed"]:
            mark = "WORSE" if change["got_worse"] else "changed"
            lines.append(f"  {change['id']} (line {change['line']}) {mark}")
            lines.append(f"    baseline:  {change['baseline']}")
            lines.append(f"    candidate: {change['candidate']}")
    lines.append("")
    if report["passed"]:
        lines.append("PASSED: the candidate does not regress beyond the tolerances")
    else:
        lines.append("FAILED:")
        lines += [f"  {r}" for r in report["regressions"]]
    return "\n".join(lines)
