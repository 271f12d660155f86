"""The inference tier's messages: a small JSON header and a raw payload, parsed apart from I/O.

One message is ``[4-byte big-endian header length][header JSON][payload]``; the header says how
many payload bytes follow (``payload``), so a truncated message is caught whichever part is cut.
gRPC carries the bytes and supplies everything else (framing on the socket, deadlines, status
codes, reconnection). We do not use protobuf messages because audio and PCM travel here as raw
int16 bytes without a copy into a repeated field, and because the project has no protoc step:
a hand-written, tested parser is smaller than generated code plus its build.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

SERVICE = "ivr.inference.Inference"  # the gRPC service name; methods are Transcribe,
# Synthesize, Embed and Describe
TRANSPORT_RATES = (8000, 16000)  # the rates TTS answers in (a call's transport rate)
ASR_RATE = 16000
VERSION = 1
_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 256 * 1024  # texts to embed ride in the header (256 a request)


class WireError(ValueError):
    """A message that cannot be parsed; the text says exactly what is wrong."""


@dataclass(frozen=True)
class Message:
    header: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""

    def __bytes__(self) -> bytes:
        head = json.dumps({**self.header, "v": VERSION, "payload": len(self.payload)},
                          separators=(",", ":")).encode()
        return _LENGTH.pack(len(head)) + head + self.payload


def parse(data: bytes) -> Message:
    """The message in ``data``; ``WireError`` for anything truncated, oversized or malformed."""
    if len(data) < _LENGTH.size:
        raise WireError(f"message truncated: {len(data)} bytes, the header length alone "
                        f"takes {_LENGTH.size}")
    (head_len,) = _LENGTH.unpack_from(data)
    if head_len > MAX_HEADER_BYTES:
        raise WireError(f"header of {head_len} bytes exceeds {MAX_HEADER_BYTES}")
    end = _LENGTH.size + head_len
    if len(data) < end:
        raise WireError(f"message truncated: header says {head_len} bytes, "
                        f"{len(data) - _LENGTH.size} present")
    try:
        header = json.loads(data[_LENGTH.size:end])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WireError(f"header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise WireError("header must be a JSON object")
    if header.get("v") != VERSION:
        raise WireError(f"message version {header.get('v')!r}: this tier speaks {VERSION}")
    declared = header.pop("payload", None)
    header.pop("v")
    if not isinstance(declared, int) or declared < 0:
        raise WireError(f"header field 'payload' must be a byte count, got {declared!r}")
    present = len(data) - end
    if present != declared:
        kind = "truncated" if present < declared else "has trailing bytes"
        raise WireError(f"message {kind}: header says {declared} payload bytes, "
                        f"{present} present")
    return Message(header, bytes(data[end:]))


def field_of(header: dict[str, Any], name: str, kind: type | tuple[type, ...],
             default: Any = ...) -> Any:
    """Header field ``name`` of type ``kind``; ``WireError`` naming the field otherwise."""
    if name not in header:
        if default is ...:
            raise WireError(f"header field {name!r} is missing")
        return default
    value = header[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise WireError(f"header field {name!r} has the wrong type: {type(value).__name__}")
    return value


def message_limit(max_audio_s: float) -> int:
    """gRPC's own cap on a message: twice the largest ASR audio the tier accepts, so a buffer
    between the two gets the tier's precise refusal and only an absurd one is cut off by gRPC."""
    return int(2 * max_audio_s * ASR_RATE * 2) + MAX_HEADER_BYTES + 64
