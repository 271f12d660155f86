"""The carriers' side of `ivr serve`: each carrier's voice webhook and media stream WebSocket.

1. The carrier asks the webhook what to do with an incoming call: Twilio POSTs
   ``/twilio/voice`` (signed ``X-Twilio-Signature``), Telnyx POSTs ``/telnyx/voice`` (signed
   Ed25519, ``telnyx-signature-ed25519``). An unsigned or forged request gets 403 and nothing
   else happens. A full or draining server rejects the call (``<Reject reason="busy"/>``:
   unanswered, unbilled); otherwise the answer is ``<Connect><Stream url="wss://.../<carrier>/
   stream/<token>">`` with a token for this call only.
2. The carrier opens the WebSocket. A missing, forged, expired or reused token closes it with
   code 1008 and the reason; so does a stream that sends no ``start``, or one for another call.
   Then the stream becomes a ``StreamLine`` speaking that carrier's dialect and the call core
   runs the call; the socket lives as long as the call.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import PlainTextResponse, Response
from loguru import logger
from starlette.websockets import WebSocketDisconnect, WebSocketState

from voice.app.settings import CarrierSettings
from voice.transports.base import CallLine, LineInfo
from voice.transports.carrier import telnyx, twilio
from voice.transports.carrier.line import StreamLine
from voice.transports.carrier.messages import Dialect, ProtocolError, StreamMessage
from voice.transports.carrier.signature import (
    telnyx_public_key,
    telnyx_signature_problem,
    valid_twilio_signature,
)
from voice.transports.carrier.tokens import StreamGrant, StreamTokens, TokenError

MAX_WEBHOOK_BYTES = 16 * 1024  # a voice webhook is about 1 kB of form fields
CLOSE_POLICY = 1008  # RFC 6455: a message that violates the endpoint's policy
CLOSE_TRY_LATER = 1013


class StreamGateway:
    """Admits one carrier's calls and hands each stream to the call core. Subclasses say how
    the carrier signs its webhook and spells its ``start``."""

    carrier = ""  # the path prefix, the log name and the call record's transport

    def __init__(self, settings: CarrierSettings, tokens: StreamTokens,
                 start_call: Callable[[CallLine], object], can_accept: Callable[[], bool], *,
                 frame_ms: int) -> None:
        self.settings = settings
        self.tokens = tokens
        self.start_call = start_call
        self.can_accept = can_accept
        self.frame_ms = frame_ms

    @property
    def webhook_path(self) -> str:
        return f"/{self.carrier}/voice"

    @property
    def stream_path(self) -> str:
        return f"/{self.carrier}/stream"

    # -- what differs per carrier ---------------------------------------------------------------

    def refusal(self, request: Request, body: bytes) -> str | None:
        """Why the webhook is not the carrier's (None: it is)."""
        raise NotImplementedError

    def answer(self, stream_url: str) -> str:
        raise NotImplementedError

    def parse(self, text: str | bytes) -> StreamMessage:
        raise NotImplementedError

    def check_start(self, start: dict) -> None:
        raise NotImplementedError

    def call_id_of(self, start: dict) -> str | None:
        raise NotImplementedError

    def dialect(self, stream_id: str) -> Dialect:
        raise NotImplementedError

    # -- the webhook ----------------------------------------------------------------------------

    def public_url(self, request: Request) -> str:
        """The URL the carrier requested: ``carrier.public_url`` + the path and query, or the
        request's."""
        if self.settings.public_url:
            query = f"?{request.url.query}" if request.url.query else ""
            return self.settings.public_url.rstrip("/") + request.url.path + query
        return str(request.url)

    def stream_url(self, request: Request, token: str) -> str:
        base = self.settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
        parts = urlsplit(base.rstrip("/"))
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
        return f"{scheme}://{parts.netloc}{parts.path}{self.stream_path}/{token}"

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return PlainTextResponse("request too large", status_code=413)
        why = self.refusal(request, body)
        if why is not None:
            logger.warning(f"{self.carrier} webhook: refused ({why}) from "
                           f"{request.client.host if request.client else '?'}")
            return PlainTextResponse(f"invalid {self.carrier} signature ({why})",
                                     status_code=403)
        fields = dict(_form(body) or [])
        call_sid = fields.get("CallSid", "")
        if not call_sid:
            return PlainTextResponse("no CallSid", status_code=400)
        if not self.can_accept():
            logger.info(f"{self.carrier} webhook: {call_sid} rejected (busy)")
            # TeXML is Twilio's markup: the same <Reject> serves both
            return Response(twilio.reject_twiml("busy"), media_type="application/xml")
        token = self.tokens.issue(call_sid, fields.get("From"), fields.get("To"))
        logger.info(f"{self.carrier} webhook: {call_sid} connected to a media stream")
        return Response(self.answer(self.stream_url(request, token)),
                        media_type="application/xml")

    # -- the stream -----------------------------------------------------------------------------

    async def stream(self, ws: WebSocket, token: str | None) -> None:
        await ws.accept()
        peer = f"{ws.client.host}:{ws.client.port}" if ws.client else None
        try:
            grant = self.tokens.check(token)
        except TokenError as error:
            logger.warning(f"{self.carrier} stream from {peer}: {error}; closing")
            await _close(ws, CLOSE_POLICY, str(error))
            return
        started = await self._wait_start(ws, grant, peer)
        if started is None:
            return
        start, stream_id, last_sequence = started
        if not self.can_accept():
            await _close(ws, CLOSE_TRY_LATER, "server busy")
            return
        info = LineInfo(transport=self.carrier, external_id=grant.call_id,
                        caller_number=grant.caller_number, called_number=grant.called_number,
                        source=peer, context={"stream_id": stream_id})
        line = StreamLine(ws, self.settings, info, self.dialect(stream_id), stream_id,
                          frame_ms=self.frame_ms, last_sequence=last_sequence)
        self.start_call(line)
        await line.run()

    async def _wait_start(self, ws: WebSocket, grant: StreamGrant, peer: str | None
                          ) -> tuple[dict, str, int | None] | None:
        """The stream's ``start`` (after ``connected``), its stream id and sequence number;
        None once the socket is closed."""
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                bad = 0
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        return None
                    try:
                        parsed = self.parse(message.get("text") or message.get("bytes") or "")
                        if parsed.event == "start":
                            self.check_start(parsed.start)
                            break
                    except ProtocolError as error:
                        bad += 1
                        logger.warning(f"{self.carrier} stream from {peer}: before start: "
                                       f"{error}")
                        if bad >= self.settings.max_bad_messages:
                            await _close(ws, CLOSE_POLICY, "too many malformed messages")
                            return None
        except TimeoutError:
            await _close(ws, CLOSE_POLICY, "no start message")
            return None
        except (WebSocketDisconnect, RuntimeError):
            return None
        if self.call_id_of(parsed.start) != grant.call_id:
            logger.warning(f"{self.carrier} stream from {peer}: start for another call; closing")
            await _close(ws, CLOSE_POLICY, "stream does not match its token")
            return None
        return parsed.start, parsed.stream_id or "", parsed.sequence


class TwilioGateway(StreamGateway):
    """Twilio Media Streams (``carrier.twilio_auth_token``)."""

    carrier = "twilio"

    def __init__(self, settings: CarrierSettings, start_call: Callable[[CallLine], object],
                 can_accept: Callable[[], bool], *, frame_ms: int) -> None:
        if settings.twilio_auth_token is None:
            raise ValueError("carrier.twilio_auth_token is not set")
        self.auth_token = settings.twilio_auth_token.get_secret_value()
        super().__init__(settings, StreamTokens(self.auth_token, settings.stream_token_ttl_s),
                         start_call, can_accept, frame_ms=frame_ms)

    def refusal(self, request: Request, body: bytes) -> str | None:
        signature = request.headers.get("x-twilio-signature")
        params = _form(body)
        if not signature:
            return "no signature"
        if params is None or not valid_twilio_signature(self.auth_token,
                                                        self.public_url(request), params,
                                                        signature):
            return "invalid signature"
        return None

    def answer(self, stream_url: str) -> str:
        return twilio.connect_stream_twiml(stream_url)

    def parse(self, text: str | bytes) -> StreamMessage:
        return twilio.parse_message(text)

    def check_start(self, start: dict) -> None:
        twilio.check_start(start)

    def call_id_of(self, start: dict) -> str | None:
        return start.get("callSid")

    def dialect(self, stream_id: str) -> Dialect:
        return twilio.TwilioDialect(stream_id)


class TelnyxGateway(StreamGateway):
    """Telnyx media streaming through a TeXML application (``carrier.telnyx_public_key``).

    The stream tokens are keyed with a secret drawn at start-up (Telnyx signs with a key pair,
    and we hold only its public half): a token is good on the process that issued it."""

    carrier = "telnyx"

    def __init__(self, settings: CarrierSettings, start_call: Callable[[CallLine], object],
                 can_accept: Callable[[], bool], *, frame_ms: int) -> None:
        if settings.telnyx_public_key is None:
            raise ValueError("carrier.telnyx_public_key is not set")
        self.public_key = telnyx_public_key(settings.telnyx_public_key)
        tokens = StreamTokens(secrets.token_hex(32), settings.stream_token_ttl_s,
                              purpose="telnyx-stream")
        super().__init__(settings, tokens, start_call, can_accept, frame_ms=frame_ms)

    def refusal(self, request: Request, body: bytes) -> str | None:
        return telnyx_signature_problem(self.public_key, body,
                                        request.headers.get("telnyx-signature-ed25519"),
                                        request.headers.get("telnyx-timestamp"),
                                        self.settings.telnyx_signature_tolerance_s)

    def answer(self, stream_url: str) -> str:
        return telnyx.connect_stream_texml(stream_url)

    def parse(self, text: str | bytes) -> StreamMessage:
        return telnyx.parse_message(text)

    def check_start(self, start: dict) -> None:
        telnyx.check_start(start)

    def call_id_of(self, start: dict) -> str | None:
        return start.get("call_control_id")  # TeXML's CallSid is the call's call_control_id

    def dialect(self, stream_id: str) -> Dialect:
        return telnyx.TelnyxDialect()


def _form(body: bytes) -> list[tuple[str, str]] | None:
    """A webhook's form fields (both carriers POST ``application/x-www-form-urlencoded``)."""
    try:
        return parse_qsl(body.decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        try:
            await ws.close(code, reason)
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass


def carrier_router(gateway: StreamGateway) -> APIRouter:
    router = APIRouter()

    @router.post(gateway.webhook_path, include_in_schema=False)
    async def voice_webhook(request: Request) -> Response:
        return await gateway.webhook(request)

    @router.websocket(gateway.stream_path + "/{token}")
    async def media_stream(ws: WebSocket, token: str) -> None:
        await gateway.stream(ws, token)

    @router.websocket(gateway.stream_path)
    async def media_stream_without_token(ws: WebSocket) -> None:
        await gateway.stream(ws, None)

    return router
