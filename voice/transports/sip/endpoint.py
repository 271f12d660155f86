"""The PJSIP endpoint, owned by one thread, and the call legs it carries.

One thread creates the pjsua2 ``Endpoint``, pumps ``libHandleEvents`` and runs every command
that touches PJSIP (answer, hang up, dial, bridge); asyncio code reaches it through
``SipEngine.submit`` and hears back through ``loop.call_soon_threadsafe``. PJSIP's own threads
(media clock, RTP) only run ``BridgePort`` callbacks. Python references to every ``Account``,
``Call`` and ``AudioMediaPort`` are kept until PJSIP is done with them: PJSIP calls into objects
Python has freed otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pjsua2 as pj
from loguru import logger

from voice.app.settings import SipSettings
from voice.transports.sip.guard import Incoming, RequestGuard, transport_remote
from voice.transports.sip.media import BridgePort
from voice.transports.sip.messages import InviteInfo, address_allowed, parse_invite, source_host
from voice.transports.sip.screen import (
    DROP,
    KNOWN_METHODS,
    Answer,
    Request,
    Throttle,
    check_framing,
    check_offer,
    check_require,
)

# The pjsua2-python wheel is built with PJSUA_MAX_CALLS = 4: pjsua refuses a fifth call leg in a
# process (inbound or outbound) whatever UaConfig.maxCalls says (measured: maxCalls 8 or 31 still
# gave 4). More calls per host means more `ivr serve` processes behind the SIP load balancer.
CALL_SLOTS = 4

_TIMER = {"inactive": pj.PJSUA_SIP_TIMER_INACTIVE, "optional": pj.PJSUA_SIP_TIMER_OPTIONAL,
          "required": pj.PJSUA_SIP_TIMER_REQUIRED, "always": pj.PJSUA_SIP_TIMER_ALWAYS}
_CODEC_IDS = {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1", "G722": "G722/16000/1"}
_DTMF_METHOD = {getattr(pj, "PJSUA_DTMF_METHOD_RFC2833", 0): "rfc4733",
                getattr(pj, "PJSUA_DTMF_METHOD_SIP_INFO", 1): "sip-info"}


class LegEventKind(StrEnum):
    RINGING = "ringing"  # outbound: 180/183 received
    CONFIRMED = "confirmed"  # the call is up (200/ACK)
    MEDIA = "media"  # audio is flowing through the leg's port
    HOLD = "hold"  # the far end put us on hold (re-INVITE/UPDATE sendonly/inactive)
    UNHOLD = "unhold"
    DTMF = "dtmf"
    TRANSFER = "transfer"  # NOTIFY of a REFER we sent: code is the far end's progress/result
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class LegEvent:
    kind: LegEventKind
    code: int = 0
    reason: str = ""
    digit: str = ""
    method: str = ""
    rate: int = 0
    at: float = field(default_factory=time.time)


class CallLeg:
    """The asyncio side's handle of one call (inbound from a caller, or outbound to an agent).

    Everything PJSIP is reached through the engine's thread; ``events`` carries what happened.
    """

    _ids = itertools.count(1)

    def __init__(self, engine: SipEngine, direction: str, invite: InviteInfo | None) -> None:
        self.engine = engine
        self.leg_id = next(self._ids)
        self.direction = direction
        self.invite = invite
        self.events: asyncio.Queue[LegEvent] = asyncio.Queue()
        self.port: BridgePort | None = None
        self.codec: str | None = None
        self.disconnected = asyncio.Event()
        self.end_code = 0
        self.end_reason = ""
        self.hangup_by_us = False
        self.pj_call: _PjCall | None = None  # touched on the engine thread only

    def __repr__(self) -> str:
        return f"CallLeg({self.leg_id}, {self.direction})"

    # -- from the engine thread --------------------------------------------------------------------

    def _post(self, event: LegEvent) -> None:
        def deliver() -> None:
            if event.kind == LegEventKind.DISCONNECTED:
                self.end_code, self.end_reason = event.code, event.reason
                self.disconnected.set()
            self.events.put_nowait(event)
        self.engine.call_soon(deliver)

    # -- commands (asyncio) ------------------------------------------------------------------------

    async def answer(self, code: int = 200, headers: dict[str, str] | None = None) -> None:
        await self.engine.run(self._answer, code, headers or {})

    async def hangup(self, code: int = 0, headers: dict[str, str] | None = None) -> None:
        """BYE when up, CANCEL while dialling, a final response while ringing."""
        self.hangup_by_us = True
        await self.engine.run(self._hangup, code, headers or {})

    async def refer_replaces(self, other: CallLeg) -> None:
        """Ask this leg's far end to replace us with ``other``'s far end (REFER + Replaces)."""
        await self.engine.run(self._xfer_replaces, other)

    # -- engine thread bodies ----------------------------------------------------------------------

    def _answer(self, code: int, headers: dict[str, str]) -> None:
        if self.pj_call is None:
            return
        op = pj.CallOpParam()
        op.statusCode = code
        _add_headers(op, headers)
        self.pj_call.answer(op)

    def _hangup(self, code: int, headers: dict[str, str]) -> None:
        if self.pj_call is None or self.disconnected.is_set():
            return
        op = pj.CallOpParam()
        op.statusCode = code
        _add_headers(op, headers)
        try:
            self.pj_call.hangup(op)
        except pj.Error as error:  # already ending
            logger.debug(f"hangup {self}: {error.info()}")

    def _xfer_replaces(self, other: CallLeg) -> None:
        if self.pj_call is None or other.pj_call is None:
            raise RuntimeError("a leg of the transfer is gone")
        self.pj_call.xferReplaces(other.pj_call, pj.CallOpParam(True))


def destroy(obj) -> None:
    """Delete a pjsua2 object's C++ side now, on the calling (endpoint) thread.

    Left to Python's garbage collector, a ``Call`` or ``AudioMediaPort`` is deleted on whatever
    thread drops the last reference, possibly after ``libDestroy``, where PJSIP asserts and
    aborts the process. SWIG's delete function also disowns the proxy, so the collector does
    not delete it a second time.
    """
    if obj is None:
        return
    try:
        if obj.thisown:
            type(obj).__swig_destroy__(obj)
    except Exception as error:  # noqa: BLE001 - shutting down: log and go on
        logger.debug(f"sip: destroying {type(obj).__name__}: {error}")


def _add_headers(op: pj.CallOpParam, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        h = pj.SipHeader()
        h.hName = name
        h.hValue = value
        op.txOption.headers.append(h)


class _PjCall(pj.Call):
    """PJSIP's call object: its callbacks run on the engine thread and post to the leg."""

    def __init__(self, engine: SipEngine, account: pj.Account, leg: CallLeg,
                 call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.engine = engine
        self.leg = leg
        self.media_connected = False

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_EARLY and self.leg.direction == "outbound":
            self.leg._post(LegEvent(LegEventKind.RINGING, info.lastStatusCode))
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.leg._post(LegEvent(LegEventKind.CONFIRMED, info.lastStatusCode))
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.leg._post(LegEvent(LegEventKind.DISCONNECTED, info.lastStatusCode,
                                    info.lastReason))
            self.engine._retire(self.leg)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self._connect(media.index)
            elif media.status in (pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
                                  pj.PJSUA_CALL_MEDIA_LOCAL_HOLD,
                                  pj.PJSUA_CALL_MEDIA_NONE):
                self.leg._post(LegEvent(LegEventKind.HOLD))

    def _connect(self, index: int) -> None:
        stream = self.getStreamInfo(index)
        self.leg.codec = stream.codecName
        if self.leg.port is None:
            rate = 16000 if stream.codecClockRate >= 16000 else 8000
            self.leg.port = self.engine._new_port(rate, f"leg{self.leg.leg_id}")
        audio = self.getAudioMedia(index)
        if self.engine.bridged.get(self.leg.leg_id) is None:
            audio.startTransmit(self.leg.port)
            self.leg.port.startTransmit(audio)
        event = LegEventKind.MEDIA if not self.media_connected else LegEventKind.UNHOLD
        self.media_connected = True
        self.leg._post(LegEvent(event, rate=self.leg.port.rate))

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.leg._post(LegEvent(LegEventKind.DTMF, digit=prm.digit,
                                method=_DTMF_METHOD.get(prm.method, str(prm.method))))

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        self.leg._post(LegEvent(LegEventKind.TRANSFER, prm.statusCode, prm.reason,
                                method="final" if prm.finalNotify else "progress"))


class _PjsipLog(pj.LogWriter):
    """PJSIP's log into ours, each entry cut to ``MAX_LOG_CHARS``.

    PJSIP dumps a whole packet it cannot parse (a hostile 70 kB header over TCP) and by default
    writes to stdout: a flood of that fills the log, and a stdout nobody reads blocks the SIP
    thread for good. Runs on whichever PJSIP thread logs; loguru is thread-safe.
    """

    MAX_LOG_CHARS = 300

    def write(self, entry: pj.LogEntry) -> None:
        text = entry.msg.rstrip()
        if len(text) > self.MAX_LOG_CHARS:
            text = f"{text[:self.MAX_LOG_CHARS]}... [{len(text)} characters]"
        logger.log("WARNING" if entry.level <= 2 else "DEBUG", f"pjsip: {text}")


class _Endpoint(pj.Endpoint):
    """The pjsua2 endpoint, for its transport-state callback (TCP connection policing)."""

    def __init__(self, engine: SipEngine) -> None:
        super().__init__()
        self.engine = engine

    def onTransportState(self, prm: pj.OnTransportStateParam) -> None:
        self.engine._transport_state(int(prm.hnd), prm.type, prm.state)


class _Account(pj.Account):
    def __init__(self, engine: SipEngine) -> None:
        super().__init__()
        self.engine = engine

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.engine._incoming(self, prm)

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.engine._registration(prm.code, prm.reason, prm.expiration)


IncomingHandler = Callable[[CallLeg], None]


class SipEngine:
    """The endpoint thread. ``on_incoming`` runs on the asyncio loop for each admitted call."""

    def __init__(self, settings: SipSettings, loop: asyncio.AbstractEventLoop,
                 on_incoming: IncomingHandler, *, frame_ms: int = 20,
                 on_refused: Callable[[InviteInfo, int, str], None] | None = None) -> None:
        self.settings = settings
        self.loop = loop
        self.on_incoming = on_incoming
        self.on_refused = on_refused
        self.frame_ms = frame_ms
        # Admission is decided on this thread, where INVITEs arrive one at a time, so that two
        # INVITEs in one burst cannot both take the last free place.
        self.draining = False  # set on shutdown: new INVITEs get 503
        self.registration: dict[str, Any] = {"state": "none" if not settings.registrar else
                                             "pending"}
        self.bound: dict[str, int] = {}  # transport -> port actually bound
        self.bridged: dict[int, int] = {}  # leg id -> leg id its audio is bridged to
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._legs: dict[int, CallLeg] = {}
        self._rejected: list[_PjCall] = []  # refused calls, kept until PJSIP is done with them
        self._retired: list[CallLeg] = []
        self._endpoint: pj.Endpoint | None = None
        self._account: _Account | None = None
        self.allow_from = list(settings.allow_from)
        self.guard = RequestGuard(self._screen)
        self._log_writer = _PjsipLog()  # PJSIP holds the pointer: kept for the engine's life
        self.throttle = Throttle(settings.refusals_before_ignore, settings.refusal_window_s,
                                 settings.ignore_s)
        self._deferred_refusals: list[tuple[_PjCall, pj.CallOpParam]] = []
        self._tcp: dict[int, tuple[str, float]] = {}  # connection -> (remote host, opened at)
        self._tcp_to_close: set[int] = set()
        self._next_sweep = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="pjsip", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("PJSIP did not start in time")
        if self._error is not None:
            raise RuntimeError(f"SIP could not start: {self._error}") from self._error

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def call_soon(self, fn: Callable[[], None]) -> None:
        try:
            self.loop.call_soon_threadsafe(fn)
        except RuntimeError:  # loop closed during shutdown
            pass

    def submit(self, fn: Callable, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._commands.put((future, fn, args))
        return future

    async def run(self, fn: Callable, *args) -> Any:
        """Run ``fn`` on the endpoint thread and await its result."""
        return await asyncio.wrap_future(self.submit(fn, *args))


    # -- outbound ----------------------------------------------------------------------------------

    async def dial(self, uri: str, headers: dict[str, str] | None = None) -> CallLeg:
        leg = CallLeg(self, "outbound", None)

        def make() -> None:
            if len(self._legs) >= CALL_SLOTS:
                raise RuntimeError(f"cannot dial {uri}: all {CALL_SLOTS} call slots of this "
                                   "process are in use")
            call = _PjCall(self, self._account, leg)
            leg.pj_call = call
            self._legs[leg.leg_id] = leg
            op = pj.CallOpParam(True)
            _add_headers(op, headers or {})
            try:
                call.makeCall(uri, op)
            except pj.Error as error:
                del self._legs[leg.leg_id]
                leg.pj_call = None
                raise RuntimeError(f"cannot dial {uri}: {error.info()}") from None
        await self.run(make)
        return leg

    async def bridge(self, a: CallLeg, b: CallLeg) -> None:
        """Connect two legs' audio directly (caller <-> agent); their ports stop carrying it."""
        def connect() -> None:
            if a.pj_call is None or b.pj_call is None:
                raise RuntimeError("a leg of the bridge is gone")
            audio_a, audio_b = a.pj_call.getAudioMedia(-1), b.pj_call.getAudioMedia(-1)
            for leg, audio in ((a, audio_a), (b, audio_b)):
                if leg.port is not None:
                    audio.stopTransmit(leg.port)
                    leg.port.stopTransmit(audio)
            audio_a.startTransmit(audio_b)
            audio_b.startTransmit(audio_a)
            self.bridged[a.leg_id], self.bridged[b.leg_id] = b.leg_id, a.leg_id
        await self.run(connect)

    # -- the engine thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._create()
        except BaseException as error:  # noqa: BLE001 - reported to start()
            self._error = error
            self._ready.set()
            self._destroy()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                self._endpoint.libHandleEvents(5)
                self._drain()
            self._shutdown_calls()
        finally:
            self._destroy()

    def _drain(self) -> None:
        if self._deferred_refusals:
            self._refuse_deferred()
        while self._tcp_to_close:
            self._close_transport(self._tcp_to_close.pop())
        if self._tcp and time.monotonic() >= self._next_sweep:
            self._sweep_tcp()
        while True:
            try:
                future, fn, args = self._commands.get_nowait()
            except queue.Empty:
                break
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except pj.Error as error:
                future.set_exception(RuntimeError(error.info()))
            except BaseException as error:  # noqa: BLE001
                future.set_exception(error)
        if self._retired:  # delete legs PJSIP has finished with, outside their callbacks
            for leg in self._retired:
                self._legs.pop(leg.leg_id, None)
                self.bridged.pop(leg.leg_id, None)
                self._release(leg)
            self._retired.clear()
            alive = []
            for call in self._rejected:
                if call.isActive():
                    alive.append(call)
                else:
                    destroy(call)
            self._rejected = alive

    def _release(self, leg: CallLeg) -> None:
        if leg.port is not None:
            leg.port.closed = True
            destroy(leg.port)
        if leg.pj_call is not None:
            call, leg.pj_call = leg.pj_call, None
            destroy(call)

    def _create(self) -> None:
        s = self.settings
        ep = _Endpoint(self)
        self._endpoint = ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # this thread pumps SIP events; no other thread runs SIP
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.userAgent = s.user_agent
        cfg.uaConfig.maxCalls = CALL_SLOTS
        cfg.logConfig.level = s.log_level
        cfg.logConfig.consoleLevel = s.log_level
        cfg.logConfig.msgLogging = 0  # never whole SIP messages (caller data) in the log
        cfg.logConfig.writer = self._log_writer
        media = cfg.medConfig
        media.clockRate = s.clock_rate
        media.sndClockRate = s.clock_rate
        media.audioFramePtime = s.bridge_ptime_ms
        media.ptime = s.ptime_ms
        media.noVad = True  # silence suppression would starve the far end's jitter buffer
        media.ecTailLen = 0  # no echo canceller: it adds latency and we are not a handset
        media.jbInit, media.jbMinPre = s.jb_init_ms, s.jb_min_pre_ms
        media.jbMaxPre, media.jbMax = s.jb_max_pre_ms, s.jb_max_ms
        ep.libInit(cfg)
        self.guard.start()  # before any transport: no request reaches pjsua unscreened
        if "tls" in s.transports:
            logger.warning("sip: the worker's TLS listener uses the pjsua2 wheel's bundled "
                           "OpenSSL 1.0.2k (end of life); terminate SIP TLS at the edge "
                           "(Kamailio's tls module) instead")
        for kind in s.transports:
            transport = pj.TransportConfig()
            transport.port = s.tls_port if kind == "tls" else s.port
            if s.host not in ("0.0.0.0", "::"):
                transport.boundAddress = s.host
            if s.public_address:
                transport.publicAddress = s.public_address
            if kind == "tls":
                transport.tlsConfig.certFile = s.tls_cert_file
                transport.tlsConfig.privKeyFile = s.tls_key_file
                if s.tls_ca_file:
                    transport.tlsConfig.CaListFile = s.tls_ca_file
            kind_id = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP,
                       "tls": pj.PJSIP_TRANSPORT_TLS}[kind]
            tid = ep.transportCreate(kind_id, transport)
            self.bound[kind] = ep.transportGetInfo(tid).localName
        # PJSIP's null device clocks the conference bridge: our ports are its only audio.
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, 0)
        for rank, name in enumerate(s.codecs):
            ep.codecSetPriority(_CODEC_IDS[name], 255 - rank)
        ep.libStart()
        account = pj.AccountConfig()
        host = s.public_address or (s.host if s.host not in ("0.0.0.0", "::") else "127.0.0.1")
        account.idUri = f"sip:{s.username or 'ivr'}@{host}"
        if s.registrar:
            account.idUri = f"sip:{s.username}@{s.registrar.split(':', 1)[1]}"
            account.regConfig.registrarUri = s.registrar
            account.regConfig.timeoutSec = s.register_expires_s
            account.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", s.realm, s.username, 0, s.password))
        if s.outbound_proxy:  # agent legs through the cluster's edge (deploy/kamailio)
            account.sipConfig.proxies.append(s.outbound_proxy)
        account.callConfig.timerUse = _TIMER[s.session_timer]
        account.callConfig.timerSessExpiresSec = s.session_expires_s
        account.mediaConfig.transportConfig.port = s.rtp_port
        account.mediaConfig.transportConfig.portRange = s.rtp_port_range
        if s.public_address:
            account.mediaConfig.transportConfig.publicAddress = s.public_address
        self._account = _Account(self)
        self._account.create(account, True)

    def _new_port(self, rate: int, name: str) -> BridgePort:
        port = BridgePort(self.loop, rate, self.frame_ms, self.settings.inbox_frames, name)
        port.create()
        return port

    def _incoming(self, account: pj.Account, prm: pj.OnIncomingCallParam) -> None:
        source = prm.rdata.srcAddress
        invite = parse_invite(prm.rdata.wholeMsg, source, self.settings.x_headers)
        leg = CallLeg(self, "inbound", invite)
        call = _PjCall(self, account, leg, prm.callId)
        leg.pj_call = call
        # The guard refused what it could before pjsua built this call; this is the check of
        # record (it also runs when the guard is off) and catches a race for the last place.
        refusal = self._admission(source_host(source))
        if refusal is not None:
            logger.info(f"sip: refused INVITE {invite.sip_call_id!r} from {source}: "
                        f"{refusal.code} {refusal.reason}")
            op = pj.CallOpParam()
            op.statusCode = refusal.code
            op.reason = refusal.reason
            _add_headers(op, dict(refusal.headers))
            leg.pj_call = None
            call.leg = _Orphan()
            # Never end a call inside onIncomingCall: pjsua2 frees the INVITE it cloned after
            # this callback returns, and a call already ended has freed it (PJSIP asserts and
            # the process aborts). The refusal is sent as soon as the callback has returned.
            self._deferred_refusals.append((call, op))
            self.call_soon(lambda: self._notify_refused(invite, refusal.code, refusal.reason))
            return
        self._legs[leg.leg_id] = leg
        op = pj.CallOpParam()
        op.statusCode = 183 if self.settings.early_media else 180
        call.answer(op)
        self.call_soon(lambda: self.on_incoming(leg))

    def _refuse_deferred(self) -> None:
        refusals, self._deferred_refusals = self._deferred_refusals, []
        for call, op in refusals:
            self._rejected.append(call)
            try:
                call.hangup(op)
            except pj.Error as error:
                logger.debug(f"sip: refusing a call: {error.info()}")

    def _admission(self, host: str) -> Answer | None:
        """Whether a new call from ``host`` is taken now; the refusal when it is not."""
        busy = (("Retry-After", str(self.settings.retry_after_s)),)
        if not self._source_allowed(host):
            return Answer(403, "Forbidden")
        if self.draining:
            return Answer(503, "Service Unavailable (shutting down)", busy)
        if self.inbound_calls >= self.settings.max_calls:
            return Answer(503, "Service Unavailable (too many calls)", busy)
        if len(self._legs) >= CALL_SLOTS:  # agent legs of warm transfers hold slots too
            return Answer(503, "Service Unavailable (no call slot)", busy)
        return None

    # -- the request guard (PJSIP's receive path, before pjsua) ------------------------------------

    def _screen(self, incoming: Incoming) -> Answer | None:
        """The guard's decision for one request: ``None`` passes it to pjsua."""
        host = incoming.host
        if self.throttle.ignored(host):
            self._count_refusal(None, DROP)
            return DROP
        request = Request.parse(incoming.raw)
        if request is None:  # PJSIP read a request here; what we cannot read is not passed on
            return self._refuse(host, None, Answer(400, "Bad Request Line"))
        if request.in_dialog:
            return self._screen_in_dialog(host, request)
        answer = check_framing(request)
        if answer is None and request.method not in KNOWN_METHODS:
            answer = Answer(501, "Not Implemented")
        if answer is None and request.method == "REGISTER":
            answer = Answer(405, "Method Not Allowed",
                            (("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, "
                              "UPDATE"),))
        if answer is None and request.method in ("INVITE", "OPTIONS"):
            answer = check_require(request)
        if answer is None and request.method == "INVITE":
            answer = self._admission(host) or check_offer(request)
        if answer is None:
            return None
        invite = None
        if request.method == "INVITE":
            invite = parse_invite(incoming.raw.decode("utf-8", "surrogateescape"),
                                  f"{host}:{incoming.port}", [])
        return self._refuse(host, invite, answer)

    def _screen_in_dialog(self, host: str, request: Request) -> Answer | None:
        """A request inside a call goes to PJSIP unless it carries SDP PJSIP must not see (a
        re-INVITE with a 300-character c= host aborts it as an INVITE does): 488, or for an
        ACK, which has no answer, dropped."""
        if request.method not in ("INVITE", "UPDATE", "PRACK", "ACK") or \
                not request.body.strip():
            return None
        answer = check_offer(request)
        if answer is None:
            return None
        if request.method == "ACK":
            self._count_refusal(None, DROP)
            return DROP
        return self._refuse(host, None, answer)

    def _refuse(self, host: str, invite: InviteInfo | None, answer: Answer) -> Answer:
        """Count a refusal; an offence (not a full server's 503) from a source that is not a
        trusted peer counts towards ignoring it for a while. Trunks and the edge in
        ``allow_from`` are never ignored: that would drop every call they carry."""
        self._count_refusal(invite, answer)
        if answer.code != 503 and not self._source_allowed(host) and \
                self.throttle.refused(host):
            logger.warning(f"sip: ignoring {host} for {self.settings.ignore_s:.0f} s after "
                           f"{self.settings.refusals_before_ignore} refused requests")
        return answer

    def _count_refusal(self, invite: InviteInfo | None, answer: Answer) -> None:
        code, why = answer.code, answer.reason if answer.code else "ignored"
        self.call_soon(lambda: self._notify_refused(invite, code, why))

    # -- TCP connections ---------------------------------------------------------------------------

    def _transport_state(self, pointer: int, kind: str, state: int) -> None:
        """Cap connections per source and in all; PJSIP's ``select()`` I/O queue has 64 handles
        for every socket in the process (SIP, RTP, RTCP), and an idle connection holds one."""
        if "TCP" not in kind.upper() and "TLS" not in kind.upper():
            return
        if state != pj.PJSIP_TP_STATE_CONNECTED:
            self._tcp.pop(pointer, None)
            self._tcp_to_close.discard(pointer)
            self.guard.last_seen.pop(pointer, None)
            return
        host = transport_remote(pointer)
        s = self.settings
        same = sum(1 for h, _ in self._tcp.values() if h == host)
        if self.throttle.ignored(host) or same >= s.tcp_max_per_source or \
                len(self._tcp) >= s.tcp_max_connections:
            logger.warning(f"sip: closing a TCP connection from {host} ({same} open from it, "
                           f"{len(self._tcp)} in all)")
            self._count_refusal(None, Answer(0, "tcp connection limit"))
            self._tcp_to_close.add(pointer)  # closed after this callback (PJSIP is mid-accept)
            return
        self._tcp[pointer] = (host, time.monotonic())

    def _sweep_tcp(self) -> None:
        """Close connections that sent no request within ``tcp_first_message_s``."""
        now = time.monotonic()
        self._next_sweep = now + 1.0
        for pointer, (host, opened) in list(self._tcp.items()):
            if pointer not in self.guard.last_seen and \
                    now - opened > self.settings.tcp_first_message_s:
                logger.info(f"sip: closing an idle TCP connection from {host}")
                self._tcp.pop(pointer, None)
                self._count_refusal(None, Answer(0, "tcp idle"))
                self._close_transport(pointer)

    def _close_transport(self, pointer: int) -> None:
        try:
            self.guard.shutdown_transport(pointer)
        except Exception as error:  # noqa: BLE001 - a connection already going away
            logger.debug(f"sip: closing a connection: {error}")

    def _notify_refused(self, invite: InviteInfo | None, code: int, why: str) -> None:
        if self.on_refused is not None:
            self.on_refused(invite, code, why)

    @property
    def inbound_calls(self) -> int:
        return sum(1 for leg in self._legs.values() if leg.direction == "inbound")

    @property
    def legs_held(self) -> int:
        """Call legs PJSIP still holds, agent legs included. A leg outlives its call while PJSIP
        ends the dialog (a 200 OK never ACKed is ended when Timer H fires, 32 s later); until
        then an inbound leg counts against ``max_calls`` and every leg holds a call slot."""
        return len(self._legs)

    def _source_allowed(self, host: str) -> bool:
        if address_allowed(host, self.allow_from):
            return True
        if self.settings.registrar:  # a register-based trunk calls from its registrar
            registrar_host = self.settings.registrar.split(":", 1)[1].split(";")[0]
            return host == registrar_host.split(":")[0]
        return False

    def _registration(self, code: int, reason: str, expires: int) -> None:
        state = {"state": "registered" if 200 <= code < 300 and expires > 0 else "failed",
                 "code": code, "reason": reason, "expires": expires}
        logger.info(f"sip: registration {state}")

        self.call_soon(lambda: setattr(self, "registration", state))

    def _retire(self, leg: CallLeg) -> None:
        self._retired.append(leg)

    def _shutdown_calls(self) -> None:
        try:
            self._endpoint.hangupAllCalls()
        except pj.Error:
            pass
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(
                leg.pj_call is not None and leg.pj_call.isActive() for leg in self._legs.values()):
            self._endpoint.libHandleEvents(20)

    def _destroy(self) -> None:
        if self._endpoint is None:
            return
        try:
            for leg in list(self._legs.values()) + self._retired:
                self._release(leg)
            for call in self._rejected:
                destroy(call)
            if self._account is not None:
                self._account.shutdown()
                destroy(self._account)
            self.guard.stop()
            self._endpoint.libDestroy()
        except pj.Error as error:
            logger.warning(f"sip: shutdown: {error.info()}")
        self._legs.clear()
        self._rejected.clear()
        self._endpoint = None


class _Orphan:
    """Stands in for the leg of a refused call: its events go nowhere."""

    direction = "inbound"
    leg_id = 0
    port = None
    pj_call = None

    def _post(self, event: LegEvent) -> None:
        return None
