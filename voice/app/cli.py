"""The ``ivr`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tracebacks must never print local variables (caller data, secrets): loguru's ``diagnose``
# off for any handler added without saying, ours below say it explicitly too.
os.environ.setdefault("LOGURU_DIAGNOSE", "NO")


def _settings(args: argparse.Namespace, **overrides):
    from voice.app.settings import IvrSettings

    if getattr(args, "handler", None):
        overrides["call__handler"] = args.handler
    if getattr(args, "crm", None):
        overrides["call__crm_url"] = args.crm
    if getattr(args, "llm_url", None):
        overrides["models__llm_url"] = args.llm_url
    return IvrSettings.load(args.config, **overrides)


def _server_settings(args: argparse.Namespace, command: str, **overrides):
    """The settings of a long-running command, or None once a bad file or value is named."""
    try:
        return _settings(args, **overrides)
    except Exception as error:  # noqa: BLE001 - a bad settings file or value: name it, stop
        print(f"ivr {command}: invalid settings: {error}", file=sys.stderr)
        return None


def _quiet_logs(verbose: bool) -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "WARNING", diagnose=False)


@contextlib.contextmanager
def turn_handler(settings):
    """The configured turn handler; 'llm' starts the embedded server unless a URL is given."""
    from voice.app.handlers import HandlerFactory

    factory = HandlerFactory(settings)
    try:
        yield factory.new()
    finally:
        factory.close()


def cmd_simulate(args: argparse.Namespace) -> int:
    from voice.app.simulate import simulate_call, write_conversation
    from voice.audio import read_audio

    settings = _settings(args)
    path = Path(args.recording)
    if not path.exists():
        print(f"ivr simulate: {path}: no such file", file=sys.stderr)
        return 2
    try:
        chunk = read_audio(path)
    except Exception as error:  # noqa: BLE001 - any decoder error: say what and stop
        print(f"ivr simulate: {path}: cannot read audio ({error})", file=sys.stderr)
        return 2
    if len(chunk.samples) == 0:
        print(f"ivr simulate: {path}: the recording is empty", file=sys.stderr)
        return 2

    def show(record) -> None:
        print(record.to_json(), flush=True)

    from intents.dialogue.turns import CallInfo

    call = CallInfo(call_id=path.stem, caller_number=args.caller_number)
    with turn_handler(settings) as handler:
        result = asyncio.run(simulate_call(chunk, settings, realtime=not args.fast,
                                           handler=handler, on_turn=show, call_info=call))
    if args.out:
        try:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            write_conversation(result, args.out, stereo=args.stereo)
        except OSError as error:  # a full disk or a bad path: the turns above are still valid
            print(f"ivr simulate: could not write {args.out}: {error}", file=sys.stderr)
            return 1
    summary = {"event": "call-end", "turns": len(result.turns),
               "caller_seconds": round(result.duration_s, 2),
               "caller_rate": result.caller_rate, "transport_rate": result.transport_rate}
    if not result.turns:
        summary["note"] = "no caller speech detected (silence or noise only): nothing to answer"
    print(json.dumps(summary), file=sys.stderr)
    return 0


def cmd_models_check(args: argparse.Namespace) -> int:
    from models.checks import run_checks
    from models.registry import shared_registry

    settings = _settings(args)
    results = run_checks(shared_registry(settings.models))
    width = max(len(r.name) for r in results)
    print(f"{'model':<{width}}  {'device':<14} {'load ms':>8} {'infer ms':>9}  result")
    for r in results:
        print(f"{r.name:<{width}}  {r.device:<14} {r.load_ms:>8.0f} {r.infer_ms:>9.1f}  "
              f"{'ok' if r.ok else 'FAILED'} {r.detail}")
    return 0 if all(r.ok for r in results) else 1


def cmd_intents_eval(args: argparse.Namespace) -> int:
    from intents.evaluate import evaluate
    from models.registry import shared_registry

    settings = _settings(args)
    try:
        embedder = shared_registry(settings.models).embedder()
        result = evaluate(args.train, args.test, embedder=embedder,
                          shots=args.shots, seed=args.seed, oos_threshold=args.oos_threshold,
                          augment=args.augment)
    except (OSError, ValueError) as error:
        print(f"ivr intents eval: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def cmd_intents_check(args: argparse.Namespace) -> int:
    from intents import check
    from models.registry import shared_registry

    settings = _settings(args)
    try:
        status, text = check.run(args.menu, shared_registry(settings.models).embedder(),
                                 as_json=args.json, folds=args.folds, strict=args.strict)
    except (OSError, ValueError) as error:
        print(f"ivr intents check: {error}", file=sys.stderr)
        return 2
    print(text)
    return status


def cmd_crm_seed(args: argparse.Namespace) -> int:
    from handoff.crm import CrmStore, seed

    settings = _settings(args)
    store = CrmStore(settings.call.crm_url)
    try:
        seed(store, customers=args.customers)
    except ValueError as error:
        print(f"ivr crm seed: {error}", file=sys.stderr)
        return 1
    print(f"seeded {settings.call.crm_url} with {args.customers + 1} customers")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Migrate the stores' databases to the newest schema (the stores also do it when they
    open; this is for a deploy step, before the workers start)."""
    from sqlalchemy.exc import SQLAlchemyError

    from handoff.migrate import upgrade_all

    settings = _settings(args)
    urls = {"calls": settings.server.store_url, "handoffs": settings.handoff.db_url,
            "crm": settings.call.crm_url}
    try:
        for chain, url, before, after in upgrade_all(urls):
            print(f"{chain}: {url}: {before or 'new'} -> {after}")
    except SQLAlchemyError as error:
        print(f"ivr db upgrade: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_inference(args: argparse.Namespace) -> int:
    from models.errors import ModelNotFound
    from voice.inference.service import serve

    overrides = {"inference__bind": args.bind} if args.bind else {}
    settings = _server_settings(args, "inference", **overrides)
    if settings is None:
        return 2
    _serve_logs(args.verbose)
    try:
        asyncio.run(serve(settings))
    except ModelNotFound as error:  # a model without a local copy: nothing is downloaded
        print(f"ivr inference: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from voice.app.server import IvrServer

    overrides = {}
    if args.host:
        overrides["sip__host"] = args.host
    if args.sip_port is not None:
        overrides["sip__port"] = args.sip_port
    if args.http_port is not None:
        overrides["server__http_port"] = args.http_port
    if args.http_host:
        overrides["server__http_host"] = args.http_host
    if args.store:
        overrides["server__store_url"] = args.store
    if args.agent:
        overrides["handoff__agent_uris"] = args.agent
    settings = _server_settings(args, "serve", **overrides)
    if settings is None:
        return 2
    _serve_logs(args.verbose)
    return asyncio.run(IvrServer(settings).run())


def cmd_cluster(args: argparse.Namespace) -> int:
    from voice.app import cluster

    try:
        plan = cluster.plan(args.config, workers=args.workers, directory=args.dir)
    except Exception as error:  # noqa: BLE001 - a bad settings file or value: name it, stop
        print(f"ivr cluster: invalid settings: {error}", file=sys.stderr)
        return 2
    if args.generate_only:
        for path in cluster.write(plan):
            print(path)
        return 0
    return cluster.run(plan)


def _serve_logs(verbose: bool) -> None:
    """One line per call event from our code; only warnings from the libraries."""
    from loguru import logger

    ours = ("voice", "handoff", "intents", "models")
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO",
               format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}",
               diagnose=False,  # a traceback shows code, never the values of local variables
               filter=lambda r: r["level"].no >= 30 or (r["name"] or "").startswith(ours))


def cmd_report(args: argparse.Namespace) -> int:
    """The contact-centre figures of the stored records as an HTML report with plots."""
    import time

    from handoff.store import HandoffStore
    from voice.app import figures, report
    from voice.app.callstore import CallStore

    try:
        window_s = figures.parse_since(args.since)
        settings = _settings(args, **({"server__store_url": args.store} if args.store else {}))
    except ValueError as error:
        print(f"ivr report: {error}", file=sys.stderr)
        return 2
    _quiet_logs(args.verbose)
    calls = CallStore(settings.server.store_url, settings.server.spool_dir)
    handoffs = HandoffStore(settings.handoff.db_url, settings.handoff.spool_dir)
    now = time.time()
    result = figures.load(calls, handoffs, now - window_s, now)
    path = report.write(result, args.out)
    rates = (f"containment {report.percent(result.containment_rate)}, transfers "
             f"{report.percent(result.transfer_rate)}")
    print(f"ivr report: {result.answered} answered calls since {args.since}, {rates}; "
          f"written to {path}")
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from voice.app.demo import run_demo

    return run_demo(args.out, http_port=args.http_port)


def cmd_call(args: argparse.Namespace) -> int:
    from voice.transports.sip.caller import main as caller_main

    return caller_main(args.rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ivr", description="Voice IVR")
    parser.add_argument("--config", type=Path, default=None, help="settings YAML file")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="play a recording as a caller")
    simulate.add_argument("recording", help="WAV (any rate) or any audio file PyAV decodes")
    simulate.add_argument("--fast", action="store_true",
                          help="do not pace in real time (stage times are processing times)")
    simulate.add_argument("--out", type=Path, help="write the reply audio as a WAV")
    simulate.add_argument("--stereo", action="store_true",
                          help="with --out: left channel caller, right channel IVR")
    simulate.add_argument("--handler", choices=["echo", "llm", "manager"])
    simulate.add_argument("--caller-number", help="calling number (caller ID) for CRM lookup")
    simulate.add_argument("--crm", help="CRM database URL (default from settings)")
    simulate.add_argument("--llm-url", help="OpenAI-compatible base URL for --handler llm")
    simulate.set_defaults(func=cmd_simulate)

    models = commands.add_parser("models", help="model registry")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    check = models_commands.add_parser("check", help="load each model and run one inference")
    check.set_defaults(func=cmd_models_check)

    intents = commands.add_parser("intents", help="intent detection")
    intents_commands = intents.add_subparsers(dest="intents_command", required=True)
    evaluate = intents_commands.add_parser("eval", help="train on one CSV, test on another")
    evaluate.add_argument("--train", type=Path, required=True, help="CSV with columns text,label")
    evaluate.add_argument("--test", type=Path, required=True, help="CSV with columns text,label")
    evaluate.add_argument("--shots", type=int, help="train on K examples per label")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--oos-threshold", default="auto",
                          type=lambda v: v if v == "auto" else float(v),
                          help="'auto' (chosen by cross-validating the training CSV) or a fixed "
                          "best-probability threshold (0: never out of scope)")
    evaluate.add_argument("--augment", action="store_true",
                          help="train on spoken-style rewrites of the examples too")
    evaluate.set_defaults(func=cmd_intents_eval)
    check_menu = intents_commands.add_parser("check", help="cross-validate a menu: estimated "
                                             "accuracy, close intents, misread examples")
    check_menu.add_argument("menu", type=Path, help="the menu YAML")
    check_menu.add_argument("--json", action="store_true", help="print the report as JSON")
    check_menu.add_argument("--folds", type=int, help="default 5, or 3 from 1000 examples")
    check_menu.add_argument("--strict", action="store_true", help="exit 1 on any warning")
    check_menu.set_defaults(func=cmd_intents_check)

    crm = commands.add_parser("crm", help="the CRM store")
    crm_commands = crm.add_subparsers(dest="crm_command", required=True)
    seed = crm_commands.add_parser("seed", help="create the deterministic demo data set")
    seed.add_argument("--crm", help="database URL (default from settings)")
    seed.add_argument("--customers", type=int, default=3000)
    seed.set_defaults(func=cmd_crm_seed)

    db = commands.add_parser("db", help="the stores' databases")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_commands.add_parser("upgrade", help="migrate the call, handoff and CRM "
                                        "databases to the newest schema (Alembic)")
    db_upgrade.set_defaults(func=cmd_db_upgrade)

    inference = commands.add_parser("inference", help="one process per host serving ASR, TTS "
                                     "and embeddings to every worker (models.inference_url)")
    inference.add_argument("--bind", help="gRPC address: unix:PATH or HOST:PORT "
                           "(inference.bind)")
    inference.set_defaults(func=cmd_inference)

    serve = commands.add_parser("serve", help="answer SIP calls and serve the HTTP API")
    serve.add_argument("--host", help="SIP bind address (default from settings: 0.0.0.0)")
    serve.add_argument("--sip-port", type=int, help="SIP UDP/TCP port (default 5060)")
    serve.add_argument("--http-host", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8080)")
    serve.add_argument("--handler", choices=["echo", "llm", "manager"])
    serve.add_argument("--crm", help="CRM database URL")
    serve.add_argument("--store", help="call store database URL")
    serve.add_argument("--agent", action="append", help="SIP URI of an agent for warm "
                       "transfers (repeat for a queue tried in order)")
    serve.set_defaults(func=cmd_serve)

    cluster = commands.add_parser("cluster", help="a Kamailio edge and N `ivr serve` workers "
                                  "on this host, run by supervisord (settings: cluster)")
    cluster.add_argument("--workers", type=int, help="number of workers (cluster.workers)")
    cluster.add_argument("--dir", type=Path, help="where the configs and logs go "
                         "(cluster.directory)")
    cluster.add_argument("--generate-only", action="store_true",
                         help="write the configs and exit")
    cluster.set_defaults(func=cmd_cluster)

    report = commands.add_parser("report", help="contact-centre figures of the stored records "
                                 "as an HTML report with plots")
    report.add_argument("--since", default="7d", help="period back from now: 7d, 24h, 90m, 2w")
    report.add_argument("--out", type=Path, default=Path("var/report.html"))
    report.add_argument("--store", help="call store database URL (default from settings)")
    report.add_argument("--json", action="store_true", help="also print the figures as JSON")
    report.set_defaults(func=cmd_report)

    demo = commands.add_parser("demo", help="real SIP calls to a real `ivr serve` on loopback, "
                               "one warm-transferred to a demo agent")
    demo.add_argument("--out", type=Path, default=Path("out"))
    demo.add_argument("--http-port", type=int, default=8080)
    demo.set_defaults(func=cmd_demo)

    from voice.app.flows_cli import add_commands as add_flow_commands

    add_flow_commands(commands, _settings)

    call = commands.add_parser("call", help="a SIP caller or auto-answering agent (tests, "
                               "benchmarks, demo); see `ivr call -- --help`", add_help=False)
    call.add_argument("rest", nargs=argparse.REMAINDER)
    call.set_defaults(func=cmd_call)

    args = parser.parse_args(argv)
    _quiet_logs(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
