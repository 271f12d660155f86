"""WebRTC signalling over HTTP, and the ``/call`` page.

- ``GET /call`` (and its assets under ``/call/assets/``): the browser caller's page, all local.
- ``POST /api/webrtc/token``: a short-lived, single-use call token, for whoever holds an API token
  or ``webrtc.secret`` (``Authorization: Bearer ...``).
- ``POST /api/webrtc/offer`` with ``Authorization: Bearer <call token>`` and
  ``{"type": "offer", "sdp": "..."}``: the SDP answer (ICE gathered: no trickle), and the call
  starts on the call core.

Refusals, each with a JSON ``detail``: 401 without a call token, 403 for a bad, expired or used
one; 400 for a body that is not an offer, SDP that does not parse, and an offer with no Opus
audio; 413 for an oversized offer; 503 (with ``Retry-After``) when the server takes no more calls.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterBuffer
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from loguru import logger

from handoff.api import BearerAuth
from voice.app.settings import WebRtcSettings
from voice.transports.base import CallLine, LineInfo
from voice.transports.webrtc.line import WebRtcCallLine
from voice.transports.webrtc.tokens import CallTokens, TokenError

WEB_DIR = Path(__file__).resolve().parents[2] / "app" / "web"
ASSETS = {"call.js": "text/javascript", "call.css": "text/css",
          "recorder-worklet.js": "text/javascript"}
RETRY_AFTER_S = 10

_AUDIO_SECTION = re.compile(r"m=audio (\d+) ")


def ice_servers(settings: WebRtcSettings) -> list[dict[str, Any]]:
    """The STUN and TURN servers, as both the page and aiortc take them."""
    servers: list[dict[str, Any]] = [{"urls": url} for url in settings.stun_urls]
    if settings.turn_urls:
        servers.append({"urls": settings.turn_urls, "username": settings.turn_username or "",
                        "credential": settings.turn_password.get_secret_value()
                        if settings.turn_password else ""})
    return servers


def audio_problem(sdp: str) -> str | None:
    """Why an offer cannot carry a call's audio, or None. aiortc accepts text that is no SDP at
    all (no media sections), so the offer is looked at before it is handed over."""
    if not sdp.lstrip().startswith("v=0"):
        return "malformed SDP: it must start with v=0"
    sections = re.split(r"\r?\n(?=m=)", sdp)
    audio = [s for s in sections if s.startswith("m=audio")]
    if not audio:
        return "the offer has no audio (m=audio) section"
    for section in audio:
        match = _AUDIO_SECTION.match(section)
        if match and match.group(1) != "0" and "a=inactive" not in section \
                and re.search(r"^a=rtpmap:\d+ opus/48000", section, re.MULTILINE | re.I):
            return None
    return "the offer's audio has no active Opus stream"


def shorten_jitter_buffer(receiver: Any, prefetch: int) -> None:
    """aiortc holds 4 audio packets (80 ms) before it decodes one and offers no setting for it;
    the receiver's buffer is replaced before any packet arrives. If aiortc's internals change,
    its default stays and this says so."""
    attribute = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, attribute, None)
    if not isinstance(current, JitterBuffer):
        logger.warning("webrtc: aiortc's jitter buffer not found; keeping its default prefetch")
        return
    setattr(receiver, attribute, JitterBuffer(capacity=current.capacity, prefetch=prefetch))


class WebRtcGateway:
    """Turns accepted offers into calls. ``start_call`` and ``can_accept`` are
    ``IvrServer``'s; ``start_call`` returns the ``Call`` (its turn hooks feed the page)."""

    def __init__(self, settings: WebRtcSettings, start_call: Callable[[CallLine], Any],
                 can_accept: Callable[[], bool], frame_ms: int = 20) -> None:
        self.settings = settings
        self.start_call = start_call
        self.can_accept = can_accept
        self.frame_ms = frame_ms
        self.tokens = CallTokens(settings.token_ttl_s)

    def configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[RTCIceServer(**s) for s in
                                            ice_servers(self.settings)])

    async def accept(self, sdp: str, source: str | None) -> tuple[str, str]:
        """The answer SDP and the call id; raises HTTPException on a bad offer."""
        problem = audio_problem(sdp)
        if problem:
            raise HTTPException(400, problem)
        line_id = uuid.uuid4().hex[:16]
        line = WebRtcCallLine(self.settings,
                              LineInfo(transport="webrtc", external_id=line_id, source=source,
                                       caller_name="browser"), frame_ms=self.frame_ms)
        answer, track = await line.media.run(self._negotiate(line, sdp))
        if not self.can_accept():  # another offer took the last place while this one was read
            await line.media.run(line.pc.close())
            raise HTTPException(503, "no more calls can be taken now; try again shortly",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        line.take_track(track)
        call = self.start_call(line)
        hooks = getattr(call, "on_turn_hooks", None)
        if hooks is not None:
            hooks.append(line.send_turn)
        call_id = getattr(call, "call_id", line_id)
        return answer, call_id

    async def _negotiate(self, line: WebRtcCallLine, sdp: str) -> tuple[str, Any]:
        """On the media loop: the peer connection, the offer applied, the answer made; the
        answer SDP and the caller's audio track."""
        pc = RTCPeerConnection(self.configuration())
        line.bind(pc)
        track_seen: list[Any] = []
        pc.on("track", lambda track: track_seen.append(track) if track.kind == "audio" else None)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise ValueError("no audio transceiver")
            transceiver = audio[0]
            shorten_jitter_buffer(transceiver.receiver, self.settings.jitter_prefetch_frames)
            opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                    if c.mimeType.lower() == "audio/opus"]
            transceiver.setCodecPreferences(opus)
            transceiver.sender.replaceTrack(line.reply)
            transceiver.direction = "sendrecv"
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as error:  # noqa: BLE001 - aiortc raises many kinds on bad SDP
            await pc.close()
            logger.info(f"webrtc: offer refused: {type(error).__name__}: {error}")
            raise HTTPException(400, f"malformed SDP offer: {error}"[:300]) from error
        if not track_seen:
            await pc.close()
            raise HTTPException(400, "the offer has no audio track the caller sends")
        return pc.localDescription.sdp, track_seen[0]


def webrtc_router(gateway: WebRtcGateway, auth: BearerAuth) -> APIRouter:
    """The page, the token endpoint and the offer endpoint."""
    settings = gateway.settings
    router = APIRouter()
    secret = settings.secret.get_secret_value().encode() if settings.secret else None

    @router.get("/call", include_in_schema=False)
    async def call_page() -> FileResponse:
        return FileResponse(WEB_DIR / "call.html", media_type="text/html",
                            headers={"Cache-Control": "no-store"})

    @router.get("/call/assets/{name}", include_in_schema=False)
    async def call_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, "no such asset")
        return FileResponse(WEB_DIR / name, media_type=ASSETS[name])

    @router.post("/api/webrtc/token")
    async def token(request: Request) -> dict[str, Any]:
        """A call token (single use, ``webrtc.token_ttl_s``), the ICE servers, and whether the
        page asks the browser for echo cancellation (``webrtc.echo_cancellation``)."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        given = given.strip().encode()
        if not (scheme.lower() == "bearer" and secret and given
                and hmac.compare_digest(secret, given)):
            auth(request)  # 401 unless an API token
        value, expires = gateway.tokens.issue()
        return {"token": value, "expires_at": expires, "ice_servers": ice_servers(settings),
                "echo_cancellation": settings.echo_cancellation}

    @router.post("/api/webrtc/offer")
    async def offer(request: Request) -> JSONResponse:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        try:
            gateway.tokens.redeem(given.strip() if scheme.lower() == "bearer" else None)
        except TokenError as error:
            code = 401 if str(error) == "missing" else 403
            raise HTTPException(code, f"call token {error}: ask /api/webrtc/token for one",
                                headers={"WWW-Authenticate": "Bearer"} if code == 401
                                else None) from error
        body = await request.body()
        if len(body) > settings.max_offer_bytes:
            raise HTTPException(413, f"offer larger than {settings.max_offer_bytes} bytes")
        try:
            data = await request.json()
        except ValueError as error:
            raise HTTPException(400, "the body must be JSON: {\"type\": \"offer\", "
                                "\"sdp\": \"...\"}") from error
        if not isinstance(data, dict) or data.get("type") != "offer" \
                or not isinstance(data.get("sdp"), str):
            raise HTTPException(400, "the body must be {\"type\": \"offer\", \"sdp\": \"...\"}")
        if not gateway.can_accept():
            raise HTTPException(503, "no more calls can be taken now; try again shortly",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        client = request.client
        sdp, call_id = await gateway.accept(data["sdp"], client.host if client else None)
        return JSONResponse({"type": "answer", "sdp": sdp, "call_id": call_id})

    return router
