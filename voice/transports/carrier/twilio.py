"""The Twilio Media Streams protocol: the TwiML that starts a stream, and its messages.

Inbound (Twilio to us) messages are JSON text frames: ``connected``, ``start``, ``media``,
``dtmf``, ``mark``, ``stop``. Outbound: ``media`` (base64 μ-law 8 kHz), ``mark`` (Twilio echoes
it once the audio sent before it has played) and ``clear`` (drop the audio buffered at Twilio;
pending marks come back at once).

pipecat's ``TwilioFrameSerializer`` reads the same messages, but into pipecat frames for a
pipecat transport, and it has no ``mark``, no sequence numbers, logs the raw message on a JSON
error and raises on bad base64. Our call core talks to a ``CallLine``, so the parsing is here,
with every malformed message turned into a ``ProtocolError`` that names what was wrong, never
what it held.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

ENCODING = "audio/x-mulaw"
RATE = 8000
MAX_MESSAGE_BYTES = 64 * 1024  # a 20 ms media message is about 300 bytes


class ProtocolError(ValueError):
    """A message that cannot be used (what was wrong, safe to log)."""


@dataclass(frozen=True)
class TwilioMessage:
    event: str
    sequence: int | None = None  # ``sequenceNumber``, when the event carries one
    stream_sid: str | None = None
    payload: bytes = b""  # media: μ-law bytes
    digit: str = ""  # dtmf
    mark: str = ""  # mark: the name we gave it
    start: dict[str, Any] = field(default_factory=dict)  # start: its "start" object


def parse_message(text: str | bytes) -> TwilioMessage:
    """One WebSocket message; ``ProtocolError`` if it is not a usable Twilio message."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(text)} bytes (limit {MAX_MESSAGE_BYTES})")
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"not JSON ({type(error).__name__} at {_position(error)})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"JSON {type(message).__name__}, not an object")
    event = message.get("event")
    if not isinstance(event, str):
        raise ProtocolError("no 'event'")
    sequence = _sequence(message.get("sequenceNumber"))
    sid = message.get("streamSid")
    sid = sid if isinstance(sid, str) else None
    if event == "media":
        media = _object(message, "media")
        return TwilioMessage(event, sequence, sid, payload=_payload(media.get("payload")))
    if event == "dtmf":
        digit = _object(message, "dtmf").get("digit")
        if not isinstance(digit, str) or len(digit) != 1:
            raise ProtocolError("dtmf without a one-character 'digit'")
        return TwilioMessage(event, sequence, sid, digit=digit)
    if event == "mark":
        name = _object(message, "mark").get("name")
        if not isinstance(name, str):
            raise ProtocolError("mark without a 'name'")
        return TwilioMessage(event, sequence, sid, mark=name)
    if event == "start":
        start = _object(message, "start")
        return TwilioMessage(event, sequence, sid or start.get("streamSid"), start=start)
    return TwilioMessage(event, sequence, sid)  # connected, stop, and events we do not use


def _position(error: Exception) -> str:
    pos = getattr(error, "pos", None)
    return f"character {pos}" if pos is not None else "decoding"


def _sequence(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)  # Twilio sends it as a string of digits
    except (TypeError, ValueError):
        raise ProtocolError("'sequenceNumber' is not a number") from None


def _object(message: dict, key: str) -> dict:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{message['event']} without a '{key}' object")
    return value


def _payload(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError("media without a 'payload' string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"media payload is not base64 ({len(value)} characters)") from None


def check_start(start: dict[str, Any]) -> None:
    """The stream must be μ-law 8 kHz mono (what ``<Connect><Stream>`` always sends)."""
    fmt = start.get("mediaFormat") or {}
    if not isinstance(fmt, dict):
        raise ProtocolError("start.mediaFormat is not an object")
    encoding, rate = fmt.get("encoding", ENCODING), fmt.get("sampleRate", RATE)
    channels = fmt.get("channels", 1)
    if encoding != ENCODING or rate != RATE or channels != 1:
        raise ProtocolError(f"unsupported media format {encoding!r} {rate} Hz x{channels}")


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
