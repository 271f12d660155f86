"""The IVR's end-of-turn rule as a LiveKit turn detector.

LiveKit ends a turn a fixed delay after its VAD hears the speech stop: ``min_delay`` when the
turn detector finds the end likely, ``max_delay`` when not. Its default detectors know nothing
of what the flow is collecting, so an order number read out in groups ("four five six ... seven
one two") was cut into three turns here. This detector reads the transcript so far against what
the turn manager's last reply expects (``voice.endpointing.turn_wait``, the SIP path's own rule:
a complete value ends the turn at once, an incomplete one keeps listening through the pauses
between digit groups, a trailing "and" gets more time) and sets ``max_delay`` to the wait that
rule asks for before answering "unlikely".
"""

from __future__ import annotations

from collections.abc import Callable

from livekit.agents import llm

from intents.dialogue.turns import Expect
from voice.app.settings import TurnSettings
from voice.endpointing import turn_wait

UNLIKELY = 0.5


class ValueTurnDetector:
    """Implements livekit-agents' turn detector protocol (``predict_end_of_turn``)."""

    def __init__(self, settings: TurnSettings, expecting: Callable[[], tuple[Expect, int | None]],
                 set_max_delay: Callable[[float], None], vad_silence_s: float) -> None:
        self.settings = settings
        self.expecting = expecting
        self.set_max_delay = set_max_delay
        self.vad_silence_s = vad_silence_s
        self.last_rule: str | None = None  # the rule that decided the latest prediction

    @property
    def model(self) -> str:
        return "ivr-value-aware"

    @property
    def provider(self) -> str:
        return "voice-ivr"

    async def unlikely_threshold(self, language: object) -> float:
        return UNLIKELY

    async def supports_language(self, language: object) -> bool:
        return True

    async def predict_end_of_turn(self, chat_ctx: llm.ChatContext, *,
                                  timeout: float | None = None) -> float:
        last = chat_ctx.items[-1] if chat_ctx.items else None
        text = last.text_content or "" if isinstance(last, llm.ChatMessage) and \
            last.role == "user" else ""
        expect, length = self.expecting()
        wait = turn_wait(text, self.settings, expect, length)
        self.last_rule = wait.rule
        # LiveKit's delay starts when its VAD declares the end of speech, itself this much
        # silence after the last voiced frame.
        delay_s = max(0.0, wait.silence_ms / 1000 - self.vad_silence_s)
        if wait.silence_ms <= self.settings.confirm_silence_ms:
            return 1.0
        self.set_max_delay(delay_s)
        return 0.0


def min_delay_s(settings: TurnSettings, vad_silence_s: float) -> float:
    """LiveKit's ``min_delay`` for the SIP path's short confirmation wait."""
    return max(0.0, settings.confirm_silence_ms / 1000 - vad_silence_s)
