"""`ivr serve`: the SIP listener and the HTTP server in one process, until SIGTERM.

Models are loaded and warmed before the first INVITE is accepted; before it too, records a
previous run could not finish are put right (spooled records replayed, this worker's calls left
open by a crash closed as ``worker-lost``). While it runs, the worker writes a heartbeat to the
call store and closes the calls of workers whose heartbeat stopped (a pool sharing
PostgreSQL), and its agent desktop also shows the handoffs of the other workers
(``handoff.live``). On SIGTERM (or SIGINT) new INVITEs get 503, calls in
progress have ``sip.shutdown_grace_s`` to finish, the rest are ended with BYE, and the process
exits once every call record is written. The HTTP server keeps serving through all of it:
``/healthz`` answers 503 ``draining`` until the process exits, so a load balancer sees the node
leave instead of losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from loguru import logger

from handoff.api import BearerAuth
from handoff.publish import HandoffPublisher
from handoff.transfer import WarmTransfer
from voice.app.call import Call
from voice.app.callstore import WORKER_LOST, CallRecord, CallStore
from voice.app.flow_follow import FlowFollower
from voice.app.handlers import HandlerFactory
from voice.app.http import LOCAL_HOSTS, create_app
from voice.app.metrics import IvrMetrics
from voice.app.settings import IvrSettings
from voice.app.tracing import Tracing
from voice.engines import shared_engines
from voice.transports.base import CallLine
from voice.transports.sip.endpoint import CallLeg, SipEngine
from voice.transports.sip.line import SipAgentLine, SipCallLine
from voice.transports.sip.messages import InviteInfo
from voice.transports.sip.refusals import RefusalLog


def desktop_tokens(entries: list[str]) -> dict[str, str]:
    """``handoff.desktop_tokens`` entries, ``NAME:TOKEN`` or a bare token, as token -> name."""
    tokens = {}
    for i, entry in enumerate(entries, 1):
        name, sep, token = entry.partition(":")
        tokens[token if sep else entry] = name if sep else f"Agent {i}"
    return tokens


class _HttpServer(uvicorn.Server):
    """uvicorn without its signal handlers: the IVR's own handler drains the calls while HTTP
    keeps answering. (``serve()`` wraps itself in ``capture_signals()``, which replaces any
    handler set on the loop and, on exit, re-raises what it caught; overriding it is the way
    to keep them ours since uvicorn 0.29. ``install_signal_handlers`` is the older hook.)"""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:
        pass


def worker_identity(settings: IvrSettings) -> str:
    """Who wrote a call row: ``server.worker_id``, else ``<hostname>:<sip port>`` (two workers
    on one host cannot listen on the same SIP port)."""
    return settings.server.worker_id or f"{socket.gethostname()}:{settings.sip.port}"


def generated_api_token(path: Path) -> tuple[str, bool]:
    """The API token kept in ``path``, created (random, mode 0600) when there is none yet;
    returns it and whether it was just created. A file others can read is narrowed to 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            logger.warning(f"ivr serve: {path} was readable by others; now mode 0600")
            path.chmod(0o600)
        token = path.read_text().strip()
        if token:
            return token, False
        path.unlink()
        return generated_api_token(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token, True


def default_allowed_hosts(settings: IvrSettings) -> list[str]:
    """The Host values answered when ``server.allowed_hosts`` is not set: this host by its
    loopback names and hostname, and the addresses it is configured to be reached at."""
    hosts = [*LOCAL_HOSTS, socket.gethostname()]
    carrier = urlsplit(settings.carrier.public_url or "").hostname
    for host in (settings.server.http_host, settings.sip.public_address, carrier):
        if host and host not in ("0.0.0.0", "::", ""):
            hosts.append(host)
    return hosts


class IvrServer:
    def __init__(self, settings: IvrSettings) -> None:
        self.settings = settings
        self.worker = worker_identity(settings)
        self.store = CallStore(settings.server.store_url, settings.server.spool_dir,
                               worker=self.worker)
        self.metrics = IvrMetrics()
        self.tracing = Tracing.from_env(settings.tracing)  # None unless OTEL_* ask for traces
        self.calls: dict[str, Call] = {}
        self.refusals = RefusalLog()
        self.shutdown = asyncio.Event()  # the grace period is over: end the calls left
        self._stopping = asyncio.Event()
        self.engine: SipEngine | None = None
        self.factory: HandlerFactory | None = None
        self.flows: FlowFollower | None = None  # follows promotions of flow versions
        self.http: uvicorn.Server | None = None
        self.started_at = time.time()
        self.routers: list = []
        self.handoffs = None  # HandoffStore
        self.hub = None  # DesktopHub
        self.pusher = None  # WebhookPusher
        self.publisher: HandoffPublisher | None = None  # warm transfers, when set up
        self.feed = None  # HandoffFeed: other workers' handoffs onto this desktop
        self._call_tasks: set[asyncio.Task] = set()
        self.auth: BearerAuth | None = None  # who may read caller data (set up with handoff)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Records first (a previous run may have died mid-call), then models: the first caller
        # must not wait for them.
        await asyncio.to_thread(self._recover_records)
        await asyncio.to_thread(self._warm)
        self.engine = SipEngine(self.settings.sip, loop, self._incoming,
                                frame_ms=self.settings.audio.frame_ms,
                                on_refused=self._refused)
        try:
            self.engine.start()
        except RuntimeError as error:
            logger.error(f"ivr serve: {error}")
            return 1
        self._setup_handoff()
        self._setup_dashboard()
        self._setup_carrier()
        self._setup_webrtc()
        server = self.settings.server
        app = create_app(self.store, self.metrics, self.health, self.routers, auth=self.auth,
                         allowed_hosts=server.allowed_hosts or
                         default_allowed_hosts(self.settings),
                         openapi=server.openapi_docs)
        config = uvicorn.Config(app, host=server.http_host, port=server.http_port,
                                log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=5)
        self.http = _HttpServer(config)  # signals stay ours (below), HTTP serves the drain
        http_task = asyncio.create_task(self.http.serve(), name="http")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        while not self.http.started and not http_task.done():
            await asyncio.sleep(0.05)
        if http_task.done():
            logger.error("ivr serve: the HTTP server could not start "
                         f"({self.settings.server.http_host}:{self.settings.server.http_port})")
            self.engine.stop()
            return 1
        http_port = self.http.servers[0].sockets[0].getsockname()[1]
        sip = ", ".join(f"{kind} {name}" for kind, name in self.engine.bound.items())
        logger.info(f"ivr serve: ready; SIP {sip}; HTTP "
                    f"http://{self.settings.server.http_host}:{http_port}")
        print(f"ivr serve: ready; SIP {sip}; HTTP http://{self.settings.server.http_host}:"
              f"{http_port}", flush=True)
        flows_task = asyncio.create_task(self.flows.run(), name="flows")
        pool_tasks = [asyncio.create_task(self._heartbeats(), name="heartbeats")]
        if self.feed is not None:
            pool_tasks.append(asyncio.create_task(self.feed.run(), name="desktop-feed"))
        await self._stopping.wait()
        flows_task.cancel()
        await asyncio.gather(flows_task, return_exceptions=True)
        await self._drain()
        for task in pool_tasks:  # after the drain: this worker's calls are all written
            task.cancel()
        await asyncio.gather(*pool_tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.leave)
        for record in self.refusals.flush():
            await asyncio.to_thread(self.store.save_call, record)
        if self.hub is not None:  # agents' pages reconnect to another node
            await self.hub.aclose()
        self.http.should_exit = True
        await asyncio.gather(http_task, return_exceptions=True)
        await asyncio.to_thread(self.engine.stop)
        if self.pusher is not None:
            await self.pusher.aclose()
        if self.factory is not None:
            await self.factory.aclose()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.close)  # the last spans exported
        logger.info("ivr serve: stopped")
        return 0

    def stop(self) -> None:
        if not self._stopping.is_set():
            logger.info("ivr serve: stopping (new calls refused)")
            self._stopping.set()

    async def _drain(self) -> None:
        if self.engine is not None:
            await self.engine.run(lambda: setattr(self.engine, "draining", True))
        grace = self.settings.sip.shutdown_grace_s
        pending = [c.done.wait() for c in self.calls.values()]
        if pending:
            logger.info(f"ivr serve: {len(pending)} call(s) in progress; waiting up to "
                        f"{grace:.0f} s")
            try:
                await asyncio.wait_for(asyncio.gather(*pending), grace)
            except TimeoutError:
                pass
        self.shutdown.set()  # calls still up end with BYE and write their records
        left = [c.done.wait() for c in self.calls.values()]
        if left:
            await asyncio.wait_for(asyncio.gather(*left), 30)

    def _setup_handoff(self) -> None:
        """The handoff store and API, the agent desktop, webhooks, and warm transfers (when the
        turn manager runs: only it routes callers to humans)."""
        from handoff.api import handoff_router
        from handoff.desktop import DesktopHub, desktop_router
        from handoff.store import HandoffStore
        from handoff.webhooks import WebhookPusher

        cfg = self.settings.handoff
        self.handoffs = HandoffStore(cfg.db_url, cfg.spool_dir,  # replays its spool
                                     worker=self.worker)
        tokens = desktop_tokens([t.get_secret_value() for t in cfg.desktop_tokens])
        self.auth = self._api_auth(tokens)
        self.routers.append(handoff_router(self.handoffs, tokens=self.auth))
        if tokens:
            from handoff.live import HandoffFeed

            self.hub = DesktopHub(tokens, on_disposition=self._disposition)
            self.routers.append(desktop_router(self.hub))
            # Handoffs of the other workers sharing the store (LISTEN/NOTIFY or polling).
            self.feed = HandoffFeed(self.handoffs, self.hub,
                                    poll_s=self.settings.server.desktop_poll_s)
        if cfg.webhook_urls:
            self.pusher = WebhookPusher(cfg.webhook_urls, cfg.webhook_secret.get_secret_value(),
                                        self.handoffs, attempts=cfg.webhook_attempts,
                                        base_delay_s=cfg.webhook_backoff_s,
                                        timeout_s=cfg.webhook_timeout_s)
        summarizer = None
        if self.settings.call.llm_phrasing and self.settings.models.llm_url:
            from handoff.summary import LlmSummarizer

            summarizer = LlmSummarizer(self.settings.models.llm_url)
        if self.factory is not None and self.factory.crm is not None:
            self.publisher = HandoffPublisher(cfg, self.handoffs, self.factory.crm, hub=self.hub,
                                              pusher=self.pusher, summarizer=summarizer)

    def _setup_webrtc(self) -> None:
        """Browser calls: the /call page and WebRTC signalling (``webrtc.enabled``)."""
        if not self.settings.webrtc.enabled:
            return
        from voice.transports.webrtc.signalling import WebRtcGateway, webrtc_router

        gateway = WebRtcGateway(self.settings.webrtc, self.start_call, self.can_accept,
                                frame_ms=self.settings.audio.frame_ms)
        self.routers.append(webrtc_router(gateway, self.auth))

    def _setup_carrier(self) -> None:
        """Calls that Twilio or Telnyx stream over a WebSocket (``carrier.twilio_auth_token``,
        ``carrier.telnyx_public_key``)."""
        carrier = self.settings.carrier
        if carrier.twilio_auth_token is None and carrier.telnyx_public_key is None:
            return
        from voice.transports.carrier.router import TelnyxGateway, TwilioGateway, carrier_router

        for gateway_class, key in ((TwilioGateway, carrier.twilio_auth_token),
                                   (TelnyxGateway, carrier.telnyx_public_key)):
            if key is not None:
                gateway = gateway_class(carrier, self.start_call, self.can_accept,
                                        frame_ms=self.settings.audio.frame_ms)
                self.routers.append(carrier_router(gateway))

    def _setup_dashboard(self) -> None:
        """The contact-centre figures of the stored records: Prometheus gauges of the last
        day and the supervisor page at /dashboard (behind the API tokens)."""
        from voice.app import figures
        from voice.app.dashboard import dashboard_router
        from voice.app.metrics import StoredFigures

        def load(since: float, until: float) -> figures.Figures:
            return figures.load(self.store, self.handoffs, since, until)

        self.metrics.registry.register(StoredFigures(load))
        self.routers.append(dashboard_router(load, self.auth))

    async def _disposition(self, handoff_id: str, agent: str, disposition: str) -> None:
        """An agent's verdict on a transfer, stored with the handoff (escalation accuracy)."""
        await asyncio.to_thread(self.handoffs.set_disposition, handoff_id, disposition, agent)

    def _api_auth(self, agents: dict[str, str]) -> BearerAuth:
        """Who may read caller data: ``server.api_tokens`` and the agents' desktop tokens; with
        neither, the token generated into ``server.api_token_file``. The log names the file,
        never the token."""
        tokens = desktop_tokens([t.get_secret_value() for t in self.settings.server.api_tokens])
        tokens.update(agents)
        if not tokens:
            path = Path(self.settings.server.api_token_file).resolve()
            token, created = generated_api_token(path)
            tokens[token] = "generated"
            how = "generated one in" if created else "using the one in"
            note = (f"ivr serve: no API token configured; {how} {path} (mode 0600): send it "
                    "as 'Authorization: Bearer <token>' to /api/calls and /api/handoffs")
            logger.warning(note)
            print(note, flush=True)
        return BearerAuth(tokens)

    def _recover_records(self) -> None:
        """Finish what a previous run left: spooled records into the database, then this
        worker's calls that were up when it died closed as ``worker-lost`` (an open row of this
        worker now cannot be a live call: no call is accepted before this returns), and
        those of other workers whose heartbeat stopped."""
        self.store.replay_spool()
        self.store.heartbeat()  # alive, before any other worker could judge it dead
        longest = self.settings.call.max_call_s + self.settings.sip.shutdown_grace_s + 300
        closed = self.store.close_lost_calls(self.worker,
                                             unowned_before=time.time() - longest)
        if closed:
            self.metrics.calls_total.labels(WORKER_LOST).inc(len(closed))
        self._close_dead_workers()

    def _close_dead_workers(self) -> None:
        lost = self.store.close_dead_workers(self.settings.server.worker_lost_after_s)
        closed = sum(len(calls) for calls in lost.values())
        if closed:
            self.metrics.calls_total.labels(WORKER_LOST).inc(closed)

    async def _heartbeats(self) -> None:
        """This worker's heartbeat in the shared call store, and the calls of workers whose
        heartbeat stopped closed as worker-lost, every ``server.heartbeat_interval_s``."""
        while True:
            await asyncio.sleep(self.settings.server.heartbeat_interval_s)
            try:
                await asyncio.to_thread(self.store.heartbeat)
                await asyncio.to_thread(self._close_dead_workers)
            except Exception as error:  # noqa: BLE001 - the database is away; next beat
                logger.warning(f"ivr serve: heartbeat failed: {error}")

    def _warm(self) -> None:
        shared_engines(self.settings)  # ASR, TTS and VAD loaded once, before the first call
        self.factory = HandlerFactory(self.settings)
        # The promoted flow version, if any, before the first call (intents/flows).
        self.flows = FlowFollower(self.settings, self.factory)
        self.flows.check()

    # -- calls -------------------------------------------------------------------------------------

    def _incoming(self, leg: CallLeg) -> None:
        self.start_call(SipCallLine(leg, self.settings.sip))

    def can_accept(self) -> bool:
        """Whether a new call from any transport may start now (not draining, not full).
        SIP refuses INVITEs itself, earlier (``SipEngine``); other transports ask here."""
        return not self._stopping.is_set() and len(self.calls) < self.settings.sip.max_calls

    def start_call(self, line: CallLine) -> Call:
        """One caller on any transport, run by the call core until it ends and is recorded."""
        call = Call(line, self.settings, self.factory.new(), self.store, shutdown=self.shutdown,
                    transfer=self._transfer if self.publisher is not None else None,
                    tracing=self.tracing)
        call.on_turn_hooks = [self.metrics.observe_turn]
        self.calls[call.call_id] = call
        self.metrics.calls_active.inc()
        task = asyncio.create_task(call.run(), name=f"call-{call.call_id}")
        self._call_tasks.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._call_tasks.discard)
        task.add_done_callback(lambda _t: self._ended(call))
        return call

    def _transfer(self, call: Call) -> WarmTransfer:
        cfg = self.settings.handoff
        agents = SipAgentLine(self.engine)
        # A caller without a PJSIP leg (a carrier's stream) reaches SIP agents its own way.
        own = getattr(call.line, "agent_line", None)
        return WarmTransfer(call, own(agents) if own else agents, self.publisher,
                            cfg.agent_uris, mode=cfg.transfer_mode,
                            ring_timeout_s=cfg.ring_timeout_s)

    def _ended(self, call: Call) -> None:
        self.calls.pop(call.call_id, None)
        self.metrics.calls_active.dec()
        self.metrics.calls_total.labels(call.record.end_reason or "unknown").inc()
        if call.record.answered_at is not None and "journey" in call.record.context:
            self.metrics.observe_call(call.record.context["journey"])
        stats = call.record.context.get("frames", {})
        if stats.get("frames_dropped"):
            self.metrics.frames_dropped.inc(stats["frames_dropped"])

    def _refused(self, invite: InviteInfo | None, code: int, why: str) -> None:
        """Every refusal counted; INVITEs aggregated into a few call records (RefusalLog)."""
        self.metrics.refused_total.labels(str(code), why).inc()
        if invite is None:
            return
        records = self.refusals.refused(invite, code, why)
        if any(r.context.get("count") == 1 for r in records):  # a new window: close it later
            loop = asyncio.get_running_loop()
            loop.call_later(self.refusals.window_s + 1, self._write_refusals)
        self._save_refusals(records)

    def _write_refusals(self) -> None:
        self._save_refusals(self.refusals.expired())

    def _save_refusals(self, records: list[CallRecord]) -> None:
        loop = asyncio.get_running_loop()
        for record in records:
            loop.run_in_executor(None, self.store.save_call, record)

    def health(self) -> dict[str, Any]:
        engine = self.engine
        return {"status": "draining" if self._stopping.is_set() else "ok",
                "calls_active": len(self.calls), "max_calls": self.settings.sip.max_calls,
                "sip": {"bound": engine.bound if engine else {},
                        "legs_held": engine.legs_held if engine else 0,
                        "registration": engine.registration if engine else None},
                "transfers": {"agents": len(self.settings.handoff.agent_uris),
                              "mode": self.settings.handoff.transfer_mode,
                              "enabled": self.publisher is not None},
                "desktop": self.hub is not None,
                "uptime_s": round(time.time() - self.started_at, 1)}
