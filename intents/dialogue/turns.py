"""The seam between the voice pipeline and the dialogue: ``TurnHandler``, ``CallerTurn``, ``Reply``.

The pipeline calls a ``TurnHandler`` once per confirmed caller turn (and once per keyed digit
string) and speaks the ``Reply`` it returns. What happens after the reply has been heard travels
with it: ``end_call`` hangs up, ``transfer_to`` hands the caller to a human queue. The turn
manager (``intents.dialogue.manager``) implements the protocol, and so do the two simple handlers
in ``intents.dialogue.simple`` (echo, for benchmarks; a bare LLM).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Expect(StrEnum):
    """What the flow expects the caller to say next.

    End of turn reads the speculative transcript against it: a value that is complete and valid
    (``Reply.expect_length`` digits, a card that passes Luhn, a date, a yes or a no) ends the turn
    at once; an incomplete one keeps listening through the pauses between digit groups.
    """

    ANYTHING = "anything"
    DIGITS = "digits"
    YES_NO = "yes-no"
    CARD = "card"
    DATE = "date"


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    caller_number: str | None = None
    called_number: str | None = None


@dataclass(frozen=True)
class CallerTurn:
    """One confirmed caller turn, as the turn manager sees it."""

    call_id: str
    index: int
    text: str
    language: str = "en"
    asr_avg_logprob: float = 0.0
    speech_start_s: float = 0.0
    speech_end_s: float = 0.0
    barge_in: bool = False  # the caller spoke over our previous reply
    interrupted_reply: str | None = None  # what we were saying when they did


@dataclass
class Reply:
    """What to say back. Either ``text`` (complete) or ``stream`` (chunks, e.g. LLM tokens).

    ``fallback_text`` is what the degradation ladder speaks if the stream's first text misses its
    budget; a turn manager that cannot guarantee its stream should always give one.
    """

    text: str | None = None
    stream: AsyncIterator[str] | None = None
    fallback_text: str | None = None
    expect: Expect = Expect.ANYTHING
    expect_length: int | None = None  # digits in the expected value, when the flow knows it
    end_call: bool = False  # hang up once this reply has been heard
    transfer_to: str | None = None  # hand the caller to this human queue once it has been heard
    nlu_ms: float = 0.0  # time the handler spent on intent detection, reported as its own stage
    metadata: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.stream is None):
            raise ValueError("a Reply has exactly one of text and stream")


class TurnHandler(Protocol):
    async def start_call(self, call: CallInfo) -> Reply | None:
        """The greeting, or None to wait for the caller."""

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        """Answer a caller turn; None says nothing."""

    async def handle_dtmf(self, digits: str) -> Reply | None:
        """Answer keyed digits (RFC 4733 or in-band)."""

    async def end_call(self, reason: str) -> None:
        """The call is over; release what the call held."""

    # Optional: ``async def preview_turn(self, turn: CallerTurn) -> str | None``, the text
    # ``handle_turn`` would answer, computed WITHOUT side effects (no state change, no tool that
    # writes, no LLM); None when it cannot tell. The pipeline calls it at the early pause to
    # prepare the reply's first clause; a wrong guess only costs the work of preparing it.
    #
    # Optional: ``speech_hint: str | None``, the ASR prompt while the caller may say anything
    # (the menu's words: ``MenuConfig.speech_hint``); a reply that expects a value gets none.
