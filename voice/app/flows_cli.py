"""`ivr flows ...` and `ivr eval`: flow versions, promotion with evidence, rollback, the gate.

Promotion is refused without a passing eval run whose candidate had exactly the promoted
content (same digest), unless ``--force`` with ``--reason``; either way the change is audited.
Rollback goes to the version before the active one and is refused when its files are gone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from intents.flows.bundle import (
    WORKING,
    BundleError,
    FlowBundle,
    list_bundles,
    load_bundle,
    resolve_bundle,
    save_bundle,
    working_bundle,
)
from intents.flows.cohort import CohortError, load_cohort
from intents.flows.diff import diff_bundles
from voice.app.flowstore import FlowStore
from voice.app.handlers import model_choices


def _store(settings) -> FlowStore:
    return FlowStore(settings.flows.store_url or settings.server.store_url)


def _working(settings) -> FlowBundle:
    return working_bundle(settings.call.menu, model_choices(settings))


def _bundle(settings, name: str | None) -> FlowBundle:
    return resolve_bundle(name, settings.flows.bundles_dir, _working(settings))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"ivr {command}: {message}", file=sys.stderr)
    return code


def cmd_flows_list(args: argparse.Namespace, settings) -> int:
    store = _store(settings)
    active = store.active()
    working = _working(settings)
    rows = [(WORKING, working)]
    for version in list_bundles(settings.flows.bundles_dir):
        try:
            rows.append((version, load_bundle(Path(settings.flows.bundles_dir) / version)))
        except BundleError as error:
            print(f"  {version}: unreadable ({error})")
    print(f"{'version':34} {'digest':9} {'intents':>7}  {'made':20} note")
    for name, b in rows:
        mark = "*" if active and active.version == b.version else " "
        label = f"{WORKING} ({b.version})" if name == WORKING else name
        passed = store.passing_run(b.digest)
        print(f"{mark}{label:33} {b.digest[:8]:9} {len(b.menu.intents):>7}  "
              f"{b.created_at[:19]:20} {b.note}"
              + (f" [eval {passed['id']} passed]" if passed else ""))
    if active is None:
        print("no version promoted: new calls run on the working files")
    else:
        print(f"active: {active.version} since {_when(active.since)}")
    return 0


def cmd_flows_diff(args: argparse.Namespace, settings) -> int:
    try:
        a, b = _bundle(settings, args.a), _bundle(settings, args.b)
    except BundleError as error:
        return _fail("flows diff", str(error))
    lines = diff_bundles(a, b)
    print(f"{a.version} -> {b.version}")
    print("\n".join(lines) if lines else "no difference")
    return 0


def cmd_flows_snapshot(args: argparse.Namespace, settings) -> int:
    """Store the working files as a version that can be evaluated and promoted."""
    working = _working(settings)
    version = args.version or working.version
    try:
        bundle = save_bundle(working, settings.flows.bundles_dir, version, note=args.note or "")
    except BundleError as error:
        return _fail("flows snapshot", str(error))
    print(f"stored {bundle.version} ({bundle.digest[:8]}) in {bundle.path}")
    return 0


def cmd_flows_promote(args: argparse.Namespace, settings) -> int:
    store = _store(settings)
    if args.version == WORKING:
        return _fail("flows promote", "store the working files first (`ivr flows snapshot`), "
                     "then evaluate and promote that version")
    try:
        bundle = load_bundle(Path(settings.flows.bundles_dir) / args.version)
    except BundleError as error:
        return _fail("flows promote", str(error))
    run = store.eval_run(args.eval) if args.eval else store.passing_run(bundle.digest)
    if args.eval and run is None:
        return _fail("flows promote", f"no eval run {args.eval}")
    evidence = run is not None and run["passed"] and run["candidate_digest"] == bundle.digest
    if not evidence and not args.force:
        why = (f"eval run {run['id']} did not pass or was not of this content" if run
               else "no passing eval run of this version's content")
        return _fail("flows promote", f"refused: {why}. Run `ivr eval COHORT --candidate "
                     f"{bundle.version}`, or use --force --reason '...' (audited)", 1)
    if args.force and not (args.reason or "").strip():
        return _fail("flows promote", "--force needs --reason: say why the gate is skipped")
    reason = args.reason or f"eval run {run['id']} passed"
    store.set_active(bundle.version, bundle.digest, action="promote", reason=reason,
                     who=args.who, eval_run=run["id"] if evidence else None,
                     forced=not evidence)
    print(f"promoted {bundle.version} ({bundle.digest[:8]})"
          + (f" on eval run {run['id']}" if evidence else " WITHOUT a passing eval run "
             "(forced; audited)"))
    return 0


def cmd_flows_rollback(args: argparse.Namespace, settings) -> int:
    store = _store(settings)
    active = store.active()
    if active is None:
        return _fail("flows rollback", "nothing is promoted: new calls already run on the "
                     "working files")
    previous = args.to
    if previous is None:
        changes = [c for c in store.audit(500) if c["version"] == active.version]
        previous = changes[0]["previous"] if changes else None
        if previous is None:
            return _fail("flows rollback", f"{active.version} has no version before it; name "
                         "one with --to VERSION")
    try:
        bundle = load_bundle(Path(settings.flows.bundles_dir) / previous)
    except BundleError as error:
        return _fail("flows rollback", f"refused: cannot roll back to {previous}: {error}", 1)
    store.set_active(bundle.version, bundle.digest, action="rollback",
                     reason=args.reason or f"rollback from {active.version}", who=args.who)
    print(f"rolled back from {active.version} to {bundle.version}")
    return 0


def cmd_flows_audit(args: argparse.Namespace, settings) -> int:
    for c in _store(settings).audit(args.limit):
        print(f"{_when(c['at'])} {c['who']:12} {c['action']:8} {c['previous']} -> "
              f"{c['version']}  eval {c['eval_run'] or '-'}"
              f"{'  FORCED' if c['forced'] else ''}  {c['reason']}")
    return 0


def cmd_eval(args: argparse.Namespace, settings) -> int:
    from loguru import logger

    from voice.app.eval import evaluate, render

    if not args.verbose:  # a transferred cohort call has no agent to ring: expected, not news
        logger.remove()
        logger.add(sys.stderr, level="ERROR", diagnose=False)
    store = _store(settings)
    try:
        candidate = _bundle(settings, args.candidate)
        if args.baseline is not None:
            baseline = _bundle(settings, args.baseline)
        else:
            active = store.active()
            baseline = _bundle(settings, active.version if active else None)
    except BundleError as error:
        return _fail("eval", str(error))
    intents = {i.name for i in candidate.menu.intents} | {i.name for i in baseline.menu.intents}
    try:
        cohort = load_cohort(args.cohort, intents=intents)
    except CohortError as error:
        return _fail("eval", f"invalid cohort, nothing was run:\n{error}")

    def progress(version: str, outcome) -> None:
        if args.verbose_calls:
            print(f"  [{version}] {outcome.id}: "
                  f"{'ok' if outcome.completed else 'NOT completed'}", file=sys.stderr)

    started = time.perf_counter()
    try:
        result = evaluate(cohort, candidate, baseline, settings, realtime=args.realtime,
                          jobs=args.jobs, only=args.call, progress=progress)
    except CohortError as error:
        return _fail("eval", f"invalid cohort, nothing was run:\n{error}")
    report = result.report
    run_id = store.save_eval(cohort=cohort.cohort, cohort_digest=result.cohort_digest,
                             candidate=candidate.version, candidate_digest=candidate.digest,
                             baseline=baseline.version, baseline_digest=baseline.digest,
                             passed=result.verdict.passed and not args.call, report=report)
    report["eval_run"] = run_id
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(render(report))
        print(f"eval run {run_id} stored ({time.perf_counter() - started:.0f} s)"
              + (" (a subset of the cohort: not evidence for a promotion)" if args.call
                 else ""))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    return 0 if result.verdict.passed else 1


def add_commands(commands, settings_loader) -> None:
    """Register `flows` and `eval` on the `ivr` parser. ``settings_loader(args)`` -> settings."""
    def run(handler):
        def call(args: argparse.Namespace) -> int:
            try:
                settings = settings_loader(args)
            except Exception as error:  # noqa: BLE001 - a bad settings file or value: name it
                return _fail(args.command, f"invalid settings: {error}")
            return handler(args, settings)
        return call

    flows = commands.add_parser("flows", help="versioned flow bundles: list, diff, snapshot, "
                                "promote, rollback, audit")
    sub = flows.add_subparsers(dest="flows_command", required=True)
    sub.add_parser("list", help="stored versions, the active one, their eval runs") \
        .set_defaults(func=run(cmd_flows_list))
    diff = sub.add_parser("diff", help="what changes from version A to version B "
                          f"('{WORKING}': this checkout's files)")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.set_defaults(func=run(cmd_flows_diff))
    snap = sub.add_parser("snapshot", help="store the working files as a version")
    snap.add_argument("--version", help="default: the menu's version and the content digest")
    snap.add_argument("--note", help="what changed, for the list")
    snap.set_defaults(func=run(cmd_flows_snapshot))
    promote = sub.add_parser("promote", help="make VERSION live for new calls (needs a "
                             "passing eval run)")
    promote.add_argument("version")
    promote.add_argument("--eval", help="the eval run to cite (default: the latest passing "
                         "one of this content)")
    promote.add_argument("--force", action="store_true", help="promote without a passing "
                         "eval run (needs --reason; audited)")
    promote.add_argument("--reason", help="why (audited)")
    promote.add_argument("--who", help="who promotes (default: the OS user)")
    promote.set_defaults(func=run(cmd_flows_promote))
    rollback = sub.add_parser("rollback", help="back to the version before the active one")
    rollback.add_argument("--to", help="a stored version instead")
    rollback.add_argument("--reason", help="why (audited)")
    rollback.add_argument("--who", help="who rolls back (default: the OS user)")
    rollback.set_defaults(func=run(cmd_flows_rollback))
    audit = sub.add_parser("audit", help="every promotion and rollback, newest first")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(func=run(cmd_flows_audit))

    evaluate = commands.add_parser("eval", help="the spoken regression gate: a cohort through "
                                   "the real pipeline for a candidate and a baseline; exit 1 "
                                   "on a regression")
    evaluate.add_argument("cohort", type=Path, help="cohort folder (with cohort.yaml) or file")
    evaluate.add_argument("--candidate", help=f"version to judge (default: {WORKING}, this "
                          "checkout's files)")
    evaluate.add_argument("--baseline", help="version to compare with (default: the active "
                          f"one, else {WORKING})")
    evaluate.add_argument("--call", action="append", help="run only this call (repeatable; "
                          "the run is then not evidence for a promotion)")
    evaluate.add_argument("--jobs", type=int, help="calls at once (default flows.eval_jobs)")
    evaluate.add_argument("--realtime", action="store_true", help="pace calls in real time: "
                          "latency is then what a caller hears")
    evaluate.add_argument("--json", action="store_true", help="print the full report as JSON")
    evaluate.add_argument("--out", type=Path, help="also write the JSON report here")
    evaluate.add_argument("--verbose-calls", action="store_true", help="a line per call run")
    evaluate.set_defaults(func=run(cmd_eval))
