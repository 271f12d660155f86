"""The whole call path with real models: recorded callers played into a pipeline in real time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from conftest import CALLS, FIXTURES
from test_speech_path import word_error_rate

from intents.dialogue.simple import EchoTurnHandler
from intents.dialogue.turns import CallerTurn, CallInfo, Expect, Reply
from voice.app.simulate import simulate_call
from voice.audio import AudioChunk, read_audio, resample
from voice.pipeline.records import Stage

ALL_STAGES = {str(s) for s in Stage}


def ivr_onsets(result, threshold: int = 200) -> list[float]:
    """Stream times (s) at which our reply audio starts, as the caller receives it."""
    ivr = np.abs(result.conversation[:, 1].astype(np.int32))
    frame = result.transport_rate // 50
    loud = [bool(ivr[i:i + frame].max(initial=0) > threshold) for i in range(0, len(ivr), frame)]
    return [i / 50 for i, on in enumerate(loud) if on and (i == 0 or not loud[i - 1])]


def voiced_onset_s(result, start_s: float, end_s: float) -> float:
    rate = result.transport_rate
    caller = result.conversation[int(start_s * rate):int(end_s * rate), 0].astype(np.float64)
    frames = caller[: len(caller) // (rate // 100) * (rate // 100)].reshape(-1, rate // 100)
    level = 10 * np.log10(np.maximum((frames**2).mean(axis=1), 1e-12))
    return start_s + np.flatnonzero(level > level.max() - 15)[0] / 100


def ivr_audio(result, start_s: float, end_s: float) -> np.ndarray:
    rate = result.transport_rate
    return result.conversation[int(start_s * rate):int(end_s * rate), 1]


@pytest.mark.slow
async def test_two_turn_call_is_heard_answered_and_timed(settings, engines, calls_manifest):
    result = await simulate_call(CALLS / "two_turns_8k.wav", settings)
    utterances = calls_manifest["two_turns_8k"]["utterances"]
    assert len(result.turns) == 2
    onsets = ivr_onsets(result)
    for turn, utterance, next_start in zip(result.turns, utterances,
                                           [utterances[1]["start_s"], 99]):
        assert word_error_rate(utterance["text"], turn.caller_text) <= 0.25, turn.caller_text
        assert turn.reply_text == f"You said: {turn.caller_text}"
        assert set(turn.stages) == ALL_STAGES and all(v >= 0 for v in turn.stages.values())
        assert turn.total_ms == pytest.approx(sum(turn.stages.values()), abs=2.0)
        assert not turn.barge_in and not turn.reply_interrupted
        # Caller side: our reply starts after they stopped and before they speak again...
        reply_start = next(t for t in onsets if t > utterance["end_s"])
        assert reply_start < next_start
        # ...and it says what the turn record says it said.
        heard = engines.transcriber.transcribe(
            resample(ivr_audio(result, reply_start - 0.1, reply_start + 6), 8000, 16000), 16000)
        assert word_error_rate(turn.reply_text, heard.text) <= 0.3, heard.text
    line = result.turns[0].to_dict()
    assert {"caller_text", "reply_text", "stages", "total_ms", "budget", "barge_in"} <= set(line)


@pytest.mark.slow
async def test_barge_in_stops_our_audio_within_200_ms_and_is_marked(settings, calls_manifest):
    result = await simulate_call(CALLS / "barge_in_8k.wav", settings)
    first, second = calls_manifest["barge_in_8k"]["utterances"]
    assert len(result.turns) == 2
    cut, answer = result.turns
    assert cut.reply_interrupted and cut.to_dict()["reply_text"].endswith("[interrupted]")
    assert answer.barge_in and not answer.reply_interrupted
    # Our reply to the first turn was playing when the caller spoke again...
    rate = result.transport_rate
    before = ivr_audio(result, second["start_s"] - 0.3, second["start_s"])
    assert np.abs(before.astype(np.int32)).max() > 1000
    # ...and went quiet within 200 ms of the caller's voiced onset (stream time, caller side):
    # the first 10 ms frame within 15 dB of the utterance's loudest, i.e. the first vowel. The
    # faint /h/ of "He" before it (about 250 ms, 25 dB down) is not detected, by design: a VAD
    # that fires on breath-level sounds stops for every breath.
    onset = voiced_onset_s(result, second["start_s"], second["end_s"])
    after = np.abs(ivr_audio(result, onset, second["end_s"]).astype(np.int32))
    frames = after[: len(after) // (rate // 100) * (rate // 100)].reshape(-1, rate // 100)
    last_loud = np.flatnonzero(frames.max(axis=1) > 200)
    stopped_after_s = (last_loud[-1] + 1) / 100 if len(last_loud) else 0.0
    assert stopped_after_s <= 0.2, f"our audio went on {stopped_after_s * 1000:.0f} ms"


class DigitsFlow(EchoTurnHandler):
    """A flow that asks for an account number, as the turn manager will."""

    async def start_call(self, call: CallInfo) -> Reply | None:
        return Reply(text="Hi.", expect=Expect.DIGITS)

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        self.heard = [*getattr(self, "heard", []), turn.text]
        return Reply(text=f"You said: {turn.text}", expect=Expect.DIGITS)


@pytest.mark.slow
async def test_digits_read_with_pauses_are_one_turn_when_the_flow_expects_digits(settings):
    flow = DigitsFlow()
    result = await simulate_call(CALLS / "digits_8k.wav", settings, handler=flow)
    assert len(result.turns) == 1, [t.caller_text for t in result.turns]
    assert "".join(c for c in result.turns[0].caller_text if c.isdigit()) == "4567"


async def test_silence_and_noise_give_no_turn_and_no_hallucination(settings):
    silence = AudioChunk(np.zeros(8000 * 6, np.int16), 8000)
    result = await simulate_call(silence, settings, realtime=False)
    assert result.turns == []
    noise = AudioChunk(np.random.default_rng(7).normal(0, 1500, 8000 * 6).astype(np.int16), 8000)
    result = await simulate_call(noise, settings, realtime=False)
    assert result.turns == []


async def test_other_sample_rates_are_carried_at_16khz(settings):
    ljspeech = read_audio(FIXTURES / "speech" / "LJ001-0002.wav")  # 22.05 kHz
    assert ljspeech.sample_rate == 22050
    result = await simulate_call(ljspeech, settings, realtime=False)
    assert result.transport_rate == 16000
    assert [word_error_rate("in being comparatively modern", t.caller_text)
            for t in result.turns] == [0.0]


async def test_a_monologue_is_cut_into_turns_and_nothing_is_lost(settings):
    sentences = read_audio(CALLS / "bench_librivox_8k.wav")
    # About 75 s of speech with no pause long enough to end a turn: the pauses are cut to 0.25 s.
    speech = []
    for utterance in __import__("json").loads((CALLS / "calls.json").read_text())[
            "bench_librivox_8k"]["utterances"]:
        a, b = int(utterance["start_s"] * 8000), int(utterance["end_s"] * 8000)
        speech += [sentences.samples[a:b], np.zeros(2000, np.int16)]
    monologue = np.concatenate(speech * 3)
    long_settings = settings.model_copy(update={"turn": settings.turn.model_copy(
        update={"confirm_silence_ms": 2000, "incomplete_silence_ms": 2000,
                "digits_silence_ms": 2000, "max_turn_s": 20.0,
                "smart_turn": False})})  # no early end at a pause Smart Turn calls final
    result = await simulate_call(AudioChunk(monologue, 8000), long_settings, realtime=False)
    assert len(result.turns) >= 3
    assert any(t.forced for t in result.turns)
    said = " ".join(t.caller_text for t in result.turns).lower()
    for word in ("dashwood", "disposed", "amiable", "respectable"):
        assert word in said


async def test_a_keyed_digit_reaches_the_turn_handler(settings):
    """RFC 4733 / SIP INFO digits arrive as pipecat DTMF frames and are answered like speech."""
    from pipecat.audio.dtmf.types import KeypadEntry
    from pipecat.frames.frames import InputDTMFFrame

    from voice.pipeline.session import CallSession

    replies = []

    class Keys(EchoTurnHandler):
        async def handle_dtmf(self, digits: str) -> Reply | None:
            replies.append(digits)
            return Reply(text=f"Option {digits}.")

    session = CallSession(settings, 8000, handler=Keys(), fast=True)
    await session.start()
    await session.push_frame(InputDTMFFrame(button=KeypadEntry.TWO))
    heard = b""
    for _ in range(100):  # two seconds of transport clock
        await session.push_audio(bytes(320))
        await asyncio.sleep(0.02)
        heard += session.pull_audio()
    await session.end()
    assert replies == ["2"]
    assert np.abs(np.frombuffer(heard, np.int16).astype(np.int32)).max() > 1000
