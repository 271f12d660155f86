"""`ivr serve`: the SIP listener and the HTTP server in one process, until SIGTERM.

Models are loaded and warmed before the first INVITE is accepted. On SIGTERM (or SIGINT) new
INVITEs get 503, calls in progress have ``sip.shutdown_grace_s`` to finish, the rest are ended
with BYE, and the process exits once every call record is written.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import uvicorn
from loguru import logger

from voice.callstore import CallRecord, CallStore
from voice.engines import shared_engines
from voice.handlers import HandlerFactory
from voice.http_app import create_app
from voice.metrics import IvrMetrics
from voice.settings import IvrSettings
from voice.sip.endpoint import CallLeg, SipEngine
from voice.sip.inbound import InboundCall
from voice.sip.messages import InviteInfo
from voice.sip.refusals import RefusalLog
from voice.sip.transfer import InterceptingHandler, TransferService


def desktop_tokens(entries: list[str]) -> dict[str, str]:
    """``handoff.desktop_tokens`` entries, ``NAME:TOKEN`` or a bare token, as token -> name."""
    tokens = {}
    for i, entry in enumerate(entries, 1):
        name, sep, token = entry.partition(":")
        tokens[token if sep else entry] = name if sep else f"Agent {i}"
    return tokens


class IvrServer:
    def __init__(self, settings: IvrSettings) -> None:
        self.settings = settings
        self.store = CallStore(settings.server.store_url, settings.server.spool_dir)
        self.metrics = IvrMetrics()
        self.calls: dict[str, InboundCall] = {}
        self.refusals = RefusalLog()
        self.shutdown = asyncio.Event()  # the grace period is over: end the calls left
        self._stopping = asyncio.Event()
        self.engine: SipEngine | None = None
        self.factory: HandlerFactory | None = None
        self.http: uvicorn.Server | None = None
        self.started_at = time.time()
        self.routers: list = []
        self.handoffs = None  # HandoffStore
        self.hub = None  # DesktopHub
        self.pusher = None  # WebhookPusher
        self.transfers: TransferService | None = None
        self._call_tasks: set[asyncio.Task] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Models first: the first caller must not wait for them.
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
        app = create_app(self.store, self.metrics, self.health, self.routers)
        config = uvicorn.Config(app, host=self.settings.server.http_host,
                                port=self.settings.server.http_port, log_level="warning",
                                lifespan="off")
        self.http = uvicorn.Server(config)
        self.http.install_signal_handlers = lambda: None  # ours below
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
        await self._stopping.wait()
        await self._drain()
        for record in self.refusals.flush():
            await asyncio.to_thread(self.store.save_call, record)
        self.http.should_exit = True
        await asyncio.gather(http_task, return_exceptions=True)
        await asyncio.to_thread(self.engine.stop)
        if self.pusher is not None:
            await self.pusher.aclose()
        if self.hub is not None:
            await self.hub.aclose()
        if self.factory is not None:
            await self.factory.aclose()
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
            except (TimeoutError, asyncio.TimeoutError):
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
        self.handoffs = HandoffStore(cfg.db_url, cfg.spool_dir)
        tokens = desktop_tokens([t.get_secret_value() for t in cfg.desktop_tokens])
        self.routers.append(handoff_router(self.handoffs,
                                           tokens=list(tokens) if tokens else None))
        if tokens:
            self.hub = DesktopHub(tokens)
            self.routers.append(desktop_router(self.hub))
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
            self.transfers = TransferService(cfg, self.engine, self.handoffs, self.factory.crm,
                                             hub=self.hub, pusher=self.pusher,
                                             summarizer=summarizer)

    def _warm(self) -> None:
        shared_engines(self.settings)  # ASR, TTS and VAD loaded once, before the first call
        self.factory = HandlerFactory(self.settings)

    # -- calls -------------------------------------------------------------------------------------

    def _incoming(self, leg: CallLeg) -> None:
        handler = self.factory.new()
        transfers = self.transfers
        if transfers is not None:
            handler = InterceptingHandler(handler)
        call = InboundCall(leg, self.settings, handler, self.store, shutdown=self.shutdown,
                           transfer=transfers.start if transfers else None,
                           on_finished=transfers.call_ended if transfers else None)
        call.on_turn_hooks = [self.metrics.observe_turn]
        self.calls[call.call_id] = call
        self.metrics.calls_active.inc()
        task = asyncio.create_task(call.run(), name=f"call-{call.call_id}")
        self._call_tasks.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._call_tasks.discard)
        task.add_done_callback(lambda _t: self._ended(call))

    def _ended(self, call: InboundCall) -> None:
        self.calls.pop(call.call_id, None)
        self.metrics.calls_active.dec()
        self.metrics.calls_total.labels(call.record.end_reason or "unknown").inc()
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
        return {"status": "stopping" if self._stopping.is_set() else "ok",
                "calls_active": len(self.calls), "max_calls": self.settings.sip.max_calls,
                "sip": {"bound": engine.bound if engine else {},
                        "registration": engine.registration if engine else None},
                "transfers": {"agents": len(self.settings.handoff.agent_uris),
                              "mode": self.settings.handoff.transfer_mode,
                              "enabled": self.transfers is not None},
                "desktop": self.hub is not None,
                "uptime_s": round(time.time() - self.started_at, 1)}
