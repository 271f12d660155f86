"""Telnyx media streaming: the TeXML that starts a stream, and its messages.

Telnyx fetches TeXML (its Twilio-compatible markup) for an incoming call; we answer
``<Connect><Stream bidirectionalMode="rtp">``, so Telnyx streams the caller's track and plays the
μ-law we send back as RTP. The WebSocket then carries, as documented in Telnyx's AsyncAPI for
media streaming (and read by pipecat's ``TelnyxFrameSerializer``):

- in: ``connected``, ``start`` (``stream_id``, ``start.call_control_id``,
  ``start.media_format``), ``media`` (``media.payload``, ``media.track``, ``sequence_number``),
  ``dtmf`` (``dtmf.digit``), ``mark`` (the echo of ours, once the audio before it has played),
  ``error`` and ``stop``;
- out: ``media`` (``media.payload``), ``mark`` (``mark.name``) and ``clear``.

The shapes differ from Twilio's only in names (snake_case, no stream id in what we send), so
the line is the same ``StreamLine``; this module is the dialect. pipecat's serializer is not
used for the reasons ``twilio`` gives (no ``mark``, no sequence numbers, pipecat frames).
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

ENCODING = "PCMU"
RATE = 8000


def parse_message(text: str | bytes) -> StreamMessage:
    """One WebSocket message; ``ProtocolError`` if it is not a usable Telnyx message."""
    message, event = load_object(text)
    seq = sequence(message, "sequence_number")
    sid = message.get("stream_id")
    sid = sid if isinstance(sid, str) else None
    if event == "media":
        media = sub_object(message, "media")
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            return StreamMessage("media-other-track", seq, sid)  # our own audio, if asked for
        return StreamMessage(event, seq, sid, payload=payload(media.get("payload")))
    if event == "dtmf":
        return StreamMessage(event, seq, sid, digit=digit(message))
    if event == "mark":
        return StreamMessage(event, seq, sid, mark=mark_name(message))
    if event == "start":
        return StreamMessage(event, seq, sid, start=sub_object(message, "start"))
    if event == "error":
        error = message.get("payload")
        error = error if isinstance(error, dict) else {}
        words = f"{error.get('code', '?')} {error.get('title', '')}".strip()
        return StreamMessage(event, seq, sid, detail=words[:200])
    return StreamMessage(event, seq, sid)  # connected, stop, and events we do not use


def check_start(start: dict[str, Any]) -> None:
    """The stream must be μ-law 8 kHz mono (what our TeXML asks for)."""
    fmt = start.get("media_format") or {}
    if not isinstance(fmt, dict):
        raise ProtocolError("start.media_format is not an object")
    encoding, rate = fmt.get("encoding", ENCODING), fmt.get("sample_rate", RATE)
    channels = fmt.get("channels", 1)
    if str(encoding).upper() != ENCODING or int(rate) != RATE or int(channels) != 1:
        raise ProtocolError(f"unsupported media format {encoding!r} {rate} Hz x{channels}")


class TelnyxDialect:
    """Telnyx's messages (``Dialect``): ours carry no stream id (one stream per socket)."""

    name = "telnyx"

    def parse(self, text: str | bytes) -> StreamMessage:
        return parse_message(text)

    def media(self, ulaw: bytes) -> str:
        return json.dumps({"event": "media",
                           "media": {"payload": base64.b64encode(ulaw).decode()}})

    def mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "mark": {"name": name}})

    def clear(self) -> str:
        return json.dumps({"event": "clear"})


def connect_stream_texml(stream_url: str) -> str:
    """The answer to Telnyx's TeXML request: connect the call to our WebSocket, both ways, as
    RTP-mode μ-law. ``<Connect>`` holds the call until our side closes the socket."""
    return ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url={quoteattr(stream_url)} bidirectionalMode="rtp"/>'
            "</Connect></Response>")
