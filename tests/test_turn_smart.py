"""Smart Turn v3.2 beside the transcript rule, in the real listen stage."""

from __future__ import annotations

import asyncio

import numpy as np
from conftest import CALLS

from voice.app.settings import IvrSettings
from voice.app.simulate import simulate_call
from voice.audio import read_audio, resample
from voice.smart_turn import shared_smart_turn


def test_the_bundled_model_loads_from_the_pipecat_wheel_and_answers_a_probability():
    model = shared_smart_turn(None)
    speech = resample(read_audio(CALLS / "two_turns_8k.wav").samples, 8000, 16000)[:4 * 16000]
    p = model.probability(speech)
    assert 0.0 <= p <= 1.0
    silence = np.zeros(16000, np.int16)
    assert model.probability(silence) != p  # it hears the audio, not a constant


def test_every_ordinary_turn_is_judged_by_smart_turn_and_still_one_turn_per_sentence(engines):
    settings = IvrSettings()
    settings.turn.smart_turn = True  # off by default (settings.TurnSettings says why)
    result = asyncio.run(simulate_call(CALLS / "two_turns_8k.wav", settings, realtime=False))
    assert len(result.turns) == 2
    for turn in result.turns:
        assert turn.smart_turn_p is not None and 0.0 <= turn.smart_turn_p <= 1.0
        assert turn.smart_turn_ms is not None and turn.smart_turn_ms > 0
        assert turn.end_rule in {"text", "smart-turn-complete"}
        assert "smart_turn_p" in turn.to_dict()


def test_smart_turn_off_leaves_the_transcript_rule(engines):
    settings = IvrSettings()
    settings.turn.smart_turn = False
    result = asyncio.run(simulate_call(CALLS / "two_turns_8k.wav", settings, realtime=False))
    assert len(result.turns) == 2
    assert all(t.smart_turn_p is None and t.end_rule == "text" for t in result.turns)


