"""Twilio's side of `ivr serve`: the voice webhook and the media stream WebSocket.

1. Twilio POSTs the incoming call to ``/twilio/voice``. The request must carry a valid
   ``X-Twilio-Signature`` (else 403, and nothing else happens). A full or draining server rejects
   the call (``<Reject reason="busy"/>``: unanswered, unbilled); otherwise the answer is
   ``<Connect><Stream url="wss://.../twilio/stream/<token>">`` with a token for this call only.
2. Twilio opens the WebSocket. A missing, forged, expired or reused token closes it with code
   1008 and the reason; so does a stream that sends no ``start``, or one for another call. Then
   the stream becomes a ``TwilioStreamLine`` and the call core runs the call; the socket lives as
   long as the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import PlainTextResponse, Response
from loguru import logger
from starlette.websockets import WebSocketDisconnect, WebSocketState

from voice.app.settings import CarrierSettings
from voice.transports.base import CallLine, LineInfo
from voice.transports.carrier.line import TwilioStreamLine
from voice.transports.carrier.signature import valid_twilio_signature
from voice.transports.carrier.tokens import StreamGrant, StreamTokens, TokenError
from voice.transports.carrier.twilio import (
    ProtocolError,
    check_start,
    connect_stream_twiml,
    parse_message,
    reject_twiml,
)

WEBHOOK_PATH = "/twilio/voice"
STREAM_PATH = "/twilio/stream"
MAX_WEBHOOK_BYTES = 16 * 1024  # Twilio's voice webhook is about 1 kB of form fields
CLOSE_POLICY = 1008  # RFC 6455: a message that violates the endpoint's policy
CLOSE_TRY_LATER = 1013


class TwilioGateway:
    """Admits Twilio calls and hands each stream to the call core."""

    def __init__(self, settings: CarrierSettings, start_call: Callable[[CallLine], object],
                 can_accept: Callable[[], bool], *, frame_ms: int) -> None:
        if settings.twilio_auth_token is None:
            raise ValueError("carrier.twilio_auth_token is not set")
        self.settings = settings
        self.auth_token = settings.twilio_auth_token.get_secret_value()
        self.tokens = StreamTokens(self.auth_token, settings.stream_token_ttl_s)
        self.start_call = start_call
        self.can_accept = can_accept
        self.frame_ms = frame_ms

    def public_url(self, request: Request) -> str:
        """The URL Twilio signed: ``carrier.public_url`` + the path and query, or the request's."""
        if self.settings.public_url:
            query = f"?{request.url.query}" if request.url.query else ""
            return self.settings.public_url.rstrip("/") + request.url.path + query
        return str(request.url)

    def stream_url(self, request: Request, token: str) -> str:
        base = self.settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
        parts = urlsplit(base.rstrip("/"))
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
        return f"{scheme}://{parts.netloc}{parts.path}{STREAM_PATH}/{token}"

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return PlainTextResponse("request too large", status_code=413)
        try:
            params = parse_qsl(body.decode(), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            params = None
        signature = request.headers.get("x-twilio-signature")
        if params is None or not valid_twilio_signature(self.auth_token,
                                                        self.public_url(request), params,
                                                        signature):
            logger.warning(f"twilio webhook: refused ({'no' if not signature else 'invalid'} "
                           f"signature) from {request.client.host if request.client else '?'}")
            return PlainTextResponse("invalid Twilio signature", status_code=403)
        fields = dict(params)
        call_sid = fields.get("CallSid", "")
        if not call_sid:
            return PlainTextResponse("no CallSid", status_code=400)
        if not self.can_accept():
            logger.info(f"twilio webhook: {call_sid} rejected (busy)")
            return Response(reject_twiml("busy"), media_type="application/xml")
        token = self.tokens.issue(call_sid, fields.get("From"), fields.get("To"))
        logger.info(f"twilio webhook: {call_sid} connected to a media stream")
        return Response(connect_stream_twiml(self.stream_url(request, token)),
                        media_type="application/xml")

    async def stream(self, ws: WebSocket, token: str | None) -> None:
        await ws.accept()
        peer = f"{ws.client.host}:{ws.client.port}" if ws.client else None
        try:
            grant = self.tokens.check(token)
        except TokenError as error:
            logger.warning(f"twilio stream from {peer}: {error}; closing")
            await _close(ws, CLOSE_POLICY, str(error))
            return
        started = await self._wait_start(ws, grant, peer)
        if started is None:
            return
        start, last_sequence = started
        if not self.can_accept():
            await _close(ws, CLOSE_TRY_LATER, "server busy")
            return
        stream_sid = start.get("streamSid") or ""
        info = LineInfo(transport="twilio", external_id=grant.call_id,
                        caller_number=grant.caller_number, called_number=grant.called_number,
                        source=peer, context={"stream_sid": stream_sid,
                                              "account_sid": start.get("accountSid")})
        line = TwilioStreamLine(ws, self.settings, info, stream_sid, frame_ms=self.frame_ms,
                                last_sequence=last_sequence)
        self.start_call(line)
        await line.run()

    async def _wait_start(self, ws: WebSocket, grant: StreamGrant, peer: str | None
                          ) -> tuple[dict, int | None] | None:
        """The stream's ``start`` (after ``connected``); None once the socket is closed."""
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                bad = 0
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        return None
                    try:
                        parsed = parse_message(message.get("text") or message.get("bytes") or "")
                        if parsed.event == "start":
                            check_start(parsed.start)
                            break
                    except ProtocolError as error:
                        bad += 1
                        logger.warning(f"twilio stream from {peer}: before start: {error}")
                        if bad >= self.settings.max_bad_messages:
                            await _close(ws, CLOSE_POLICY, "too many malformed messages")
                            return None
        except TimeoutError:
            await _close(ws, CLOSE_POLICY, "no start message")
            return None
        except (WebSocketDisconnect, RuntimeError):
            return None
        if parsed.start.get("callSid") != grant.call_id:
            logger.warning(f"twilio stream from {peer}: start for another call; closing")
            await _close(ws, CLOSE_POLICY, "stream does not match its token")
            return None
        return {**parsed.start, "streamSid": parsed.stream_sid}, parsed.sequence


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        try:
            await ws.close(code, reason)
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass


def twilio_router(gateway: TwilioGateway) -> APIRouter:
    router = APIRouter()

    @router.post(WEBHOOK_PATH, include_in_schema=False)
    async def voice_webhook(request: Request) -> Response:
        return await gateway.webhook(request)

    @router.websocket(STREAM_PATH + "/{token}")
    async def media_stream(ws: WebSocket, token: str) -> None:
        await gateway.stream(ws, token)

    @router.websocket(STREAM_PATH)
    async def media_stream_without_token(ws: WebSocket) -> None:
        await gateway.stream(ws, None)

    return router
