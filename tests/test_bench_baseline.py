"""The benchmark's stock pipecat baseline still runs and hears the caller (so the ratio is real)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import CALLS
from test_speech_path import word_error_rate

from models.registry import shared_registry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


@pytest.mark.slow
async def test_stock_pipecat_answers_both_turns(calls_manifest):
    from stock_pipecat import run_stock_pipecat

    registry = shared_registry()
    run = await run_stock_pipecat(CALLS / "two_turns_8k.wav",
                                  whisper_model=str(registry.whisper_path("tiny.en")),
                                  piper_voice=registry.piper_voice_path())
    utterances = calls_manifest["two_turns_8k"]["utterances"]
    assert len(run.transcripts) == 2
    for heard, utterance in zip(run.transcripts, utterances):
        assert word_error_rate(utterance["text"], heard) <= 0.25
    first_end = run.feed_start + utterances[0]["end_s"]
    assert any(onset > first_end for onset in run.reply_onsets)
