"""What every carrier's media stream has in common: the message the line reads, the checks of
its fields, and the ``Dialect`` a carrier module provides (how to read and write its messages).

Twilio and Telnyx (and the others pipecat serializes) send the same events (``start``,
``media``, ``dtmf``, ``mark``, ``stop``) under different field names; ``StreamLine`` works on the
parsed ``StreamMessage`` and never sees the names. Every malformed message becomes a
``ProtocolError`` that names what was wrong, never what it held.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_MESSAGE_BYTES = 64 * 1024  # a 20 ms media message is about 300 bytes


class ProtocolError(ValueError):
    """A message that cannot be used (what was wrong, safe to log)."""


@dataclass(frozen=True)
class StreamMessage:
    event: str  # connected, start, media, dtmf, mark, stop, error, or one we do not use
    sequence: int | None = None  # the carrier's sequence number, when the event carries one
    stream_id: str | None = None
    payload: bytes = b""  # media: μ-law bytes of the caller's track
    digit: str = ""  # dtmf
    mark: str = ""  # mark: the name we gave it
    detail: str = ""  # error: the carrier's words for it
    start: dict[str, Any] = field(default_factory=dict)  # start: its "start" object


class Dialect(Protocol):
    """One carrier's messages, for one stream."""

    name: str  # the call record's transport and the DTMF method, e.g. "twilio"

    def parse(self, text: str | bytes) -> StreamMessage: ...

    def media(self, ulaw: bytes) -> str: ...

    def mark(self, name: str) -> str: ...

    def clear(self) -> str: ...


def load_object(text: str | bytes) -> tuple[dict, str]:
    """A message as a JSON object, and its ``event``."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(text)} bytes (limit {MAX_MESSAGE_BYTES})")
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        pos = getattr(error, "pos", None)
        where = f"character {pos}" if pos is not None else "decoding"
        raise ProtocolError(f"not JSON ({type(error).__name__} at {where})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"JSON {type(message).__name__}, not an object")
    event = message.get("event")
    if not isinstance(event, str):
        raise ProtocolError("no 'event'")
    return message, event


def sequence(message: dict, key: str) -> int | None:
    value = message.get(key)
    if value is None:
        return None
    try:
        return int(value)  # carriers send it as a string of digits
    except (TypeError, ValueError):
        raise ProtocolError(f"'{key}' is not a number") from None


def sub_object(message: dict, key: str) -> dict:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{message['event']} without a '{key}' object")
    return value


def payload(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError("media without a 'payload' string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"media payload is not base64 ({len(value)} characters)") from None


def digit(message: dict) -> str:
    value = sub_object(message, "dtmf").get("digit")
    if not isinstance(value, str) or len(value) != 1:
        raise ProtocolError("dtmf without a one-character 'digit'")
    return value


def mark_name(message: dict) -> str:
    name = sub_object(message, "mark").get("name")
    if not isinstance(name, str):
        raise ProtocolError("mark without a 'name'")
    return name
