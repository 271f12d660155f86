"""What a transport gives the call core: the ``CallLine`` protocol.

A transport (SIP, a recording played as a caller, WebRTC, a carrier's WebSocket stream) turns one
caller into a ``CallLine``: audio in and out at 8 or 16 kHz in 20 ms frames of int16 mono, keypad
and hold events, answer and hang-up. Everything else about a call (the pipeline, limits and
watchdog, goodbyes, records, the hand-off to a warm transfer) is written once, in
``voice.app.call``, against this protocol. A transport that can also dial agents implements
``handoff.transfer.AgentLine`` for warm transfers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

# One frame of outgoing audio, or None for silence; called on whatever thread clocks the line
# (PJSIP's media thread for SIP), so it must only take a prepared frame and return.
AudioSource = Callable[[], bytes | None]


class LineEventKind(StrEnum):
    DTMF = "dtmf"  # a key: ``digit`` and ``method`` (rfc4733, sip-info, inband)
    HOLD = "hold"  # the caller's side put the call on hold
    UNHOLD = "unhold"
    TRANSFER = "transfer"  # progress of a transfer the line was asked for (``code``, ``reason``)


@dataclass(frozen=True)
class LineEvent:
    kind: LineEventKind
    digit: str = ""
    method: str = ""
    code: int = 0
    reason: str = ""
    final: bool = False


@dataclass(frozen=True)
class LineInfo:
    """Who is calling whom, as the transport knows it (the call record's header)."""

    transport: str  # "sip", "recorded", "webrtc", ...
    external_id: str | None = None  # the transport's own id (SIP Call-ID, stream SID)
    caller_number: str | None = None
    caller_name: str | None = None
    called_number: str | None = None
    source: str | None = None  # the peer's address
    context: dict[str, Any] = field(default_factory=dict)  # e.g. copied SIP X- headers


class CallLine(Protocol):
    """One caller's connection, from the call core's side."""

    info: LineInfo
    ended: asyncio.Event  # the far end is gone (BYE, CANCEL, a closed stream, a timeout)

    @property
    def ended_by_us(self) -> bool:
        """The line ended because we hung up."""

    @property
    def codec(self) -> str | None:
        """The negotiated codec, once media flows."""

    async def answer(self) -> int | None:
        """Accept the call and wait for media; the audio rate (8000 or 16000), or None when
        the caller left or no media arrived in time."""

    async def receive(self) -> list[bytes]:
        """The caller's frames since the last call (waits for at least one)."""

    def play_from(self, source: AudioSource | None) -> None:
        """Where the line takes each outgoing frame from (None: silence)."""

    async def next_event(self) -> LineEvent:
        """The next keypad, hold or transfer event."""

    async def hangup(self, code: int = 0) -> None:
        """End the call from our side (a final response if not yet answered) and wait for it."""

    def end_details(self) -> dict[str, Any]:
        """What the transport knows of how the line ended and how its audio went."""
