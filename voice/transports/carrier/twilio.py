"""The Twilio Media Streams protocol: the TwiML that starts a stream, and its messages.

Inbound (Twilio to us) messages are JSON text frames: ``connected``, ``start``, ``media``,
``dtmf``, ``mark``, ``stop``. Outbound: ``media`` (base64 μ-law 8 kHz), ``mark`` (Twilio echoes
it once the audio sent before it has played) and ``clear`` (drop the audio buffered at Twilio;
pending marks come back at once).

pipecat's ``TwilioFrameSerializer`` reads the same messages, but into pipecat frames for a
pipecat transport, and it has no ``mark``, no sequence numbers, logs the raw message on a JSON
error and raises on bad base64. Our call core talks to a ``CallLine``, so the parsing is here,
on the checks every carrier shares (``messages``).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from xml.sax.saxutils import quoteattr

from voice.transports.carrier.messages import (
    ProtocolError,
    StreamMessage,
    digit,
    load_object,
    mark_name,
    payload,
    sequence,
    sub_object,
)

ENCODING = "audio/x-mulaw"
RATE = 8000


def parse_message(text: str | bytes) -> StreamMessage:
    """One WebSocket message; ``ProtocolError`` if it is not a usable Twilio message."""
    message, event = load_object(text)
    seq = sequence(message, "sequenceNumber")
    sid = message.get("streamSid")
    sid = sid if isinstance(sid, str) else None
    if event == "media":
        return StreamMessage(event, seq, sid,
                             payload=payload(sub_object(message, "media").get("payload")))
    if event == "dtmf":
        return StreamMessage(event, seq, sid, digit=digit(message))
    if event == "mark":
        return StreamMessage(event, seq, sid, mark=mark_name(message))
    if event == "start":
        start = sub_object(message, "start")
        return StreamMessage(event, seq, sid or start.get("streamSid"), start=start)
    return StreamMessage(event, seq, sid)  # connected, stop, and events we do not use


def check_start(start: dict[str, Any]) -> None:
    """The stream must be μ-law 8 kHz mono (what ``<Connect><Stream>`` always sends)."""
    fmt = start.get("mediaFormat") or {}
    if not isinstance(fmt, dict):
        raise ProtocolError("start.mediaFormat is not an object")
    encoding, rate = fmt.get("encoding", ENCODING), fmt.get("sampleRate", RATE)
    channels = fmt.get("channels", 1)
    if encoding != ENCODING or rate != RATE or channels != 1:
        raise ProtocolError(f"unsupported media format {encoding!r} {rate} Hz x{channels}")


class TwilioDialect:
    """Twilio's messages on one stream (``Dialect``): ours carry its ``streamSid``."""

    name = "twilio"

    def __init__(self, stream_sid: str) -> None:
        self.stream_sid = stream_sid

    def parse(self, text: str | bytes) -> StreamMessage:
        return parse_message(text)

    def media(self, ulaw: bytes) -> str:
        return media_message(self.stream_sid, ulaw)

    def mark(self, name: str) -> str:
        return mark_message(self.stream_sid, name)

    def clear(self) -> str:
        return clear_message(self.stream_sid)


def media_message(stream_sid: str, ulaw: bytes) -> str:
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"payload": base64.b64encode(ulaw).decode()}})


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})


def connect_stream_twiml(stream_url: str, parameters: dict[str, str] | None = None) -> str:
    """The answer to Twilio's voice webhook: connect the call to our WebSocket, both ways.
    ``<Connect>`` holds the call until our side closes the socket; nothing follows it."""
    params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>"
                     for k, v in (parameters or {}).items())
    return ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f"<Stream url={quoteattr(stream_url)}>{params}</Stream>"
            "</Connect></Response>")


def reject_twiml(reason: str = "busy") -> str:
    """Refuse a call before it is answered (``busy`` or ``rejected``): nothing is billed."""
    return ('<?xml version="1.0" encoding="UTF-8"?><Response>'
            f"<Reject reason={quoteattr(reason)}/></Response>")
