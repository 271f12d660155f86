"""Cross-call ASR batching: turns of different calls that end together share one Whisper pass,
each caller gets exactly what it would have got alone, and no turn waits past its deadline."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.conftest import CALLS, FIXTURES
from voice.app.settings import AsrSettings, IvrSettings
from voice.asr import WhisperTranscriber, window_frames
from voice.audio import read_audio, resample
from voice.inference.batching import BatchingTranscriber, DispatchReason

BUDGET_MS = 20_000  # long, so that the batching window and deadlines set each test's timing


@pytest.fixture(scope="module")
def whisper(settings):
    from models.registry import shared_registry

    return shared_registry(settings.models).whisper()


@pytest.fixture(scope="module")
def turns(calls_manifest) -> list[tuple[str, np.ndarray]]:
    """Every spoken turn of the fixture calls (real speakers over 8 kHz G.711, as the IVR hears
    them, back to 16 kHz), plus JFK's 11 s sentence, whose encoder window is longer."""
    out = []
    for call, info in calls_manifest.items():
        audio = read_audio(CALLS / info["file"])
        for turn in info["utterances"]:
            a = int(max(0.0, turn["start_s"] - 0.2) * 8000)
            b = int((turn["end_s"] + 0.12) * 8000)
            out.append((f"{call}@{turn['start_s']}", resample(audio.samples[a:b], 8000, 16000)))
    jfk = read_audio(FIXTURES / "speech" / "jfk.flac")
    out.append(("jfk", resample(jfk.samples, jfk.sample_rate, 16000)))
    return out


@pytest.fixture(scope="module")
def alone(whisper, turns):
    """What each turn transcribes to on its own (the unbatched path)."""
    single = WhisperTranscriber(whisper, AsrSettings())
    return [single.transcribe(samples, 16000) for _, samples in turns]


def batcher(whisper, **asr) -> BatchingTranscriber:
    return BatchingTranscriber(whisper, AsrSettings(**asr), budget_ms=BUDGET_MS)


async def test_turns_that_arrive_together_are_batched_and_match_unbatched(whisper, turns, alone):
    asr = batcher(whisper, batch_window_ms=2000, max_batch=8)
    try:
        results = await asyncio.gather(*(asr.transcribe(samples) for _, samples in turns))
    finally:
        await asr.aclose()

    for (name, _), got, want in zip(turns, results, alone, strict=True):
        assert got.text == want.text, name
        assert got.dropped == want.dropped, name
        assert got.avg_logprob == pytest.approx(want.avg_logprob, abs=1e-4), name
        assert got.no_speech_prob == pytest.approx(want.no_speech_prob, abs=1e-4), name

    windows = [window_frames(len(samples) / 16000) for _, samples in turns]
    assert windows == [1000] * 24 + [1500]  # JFK's 11 s need a 15 s window
    # FIFO: the 24 calls' turns in full batches of 8, then JFK alone (never padded into them).
    assert [b.size for b in asr.batches] == [8, 8, 8, 1]
    assert [b.window_frames for b in asr.batches] == [1000] * 3 + [1500]
    assert [b.reason for b in asr.batches][:3] == [DispatchReason.FULL] * 3
    assert asr.batch_sizes == {8: 3, 1: 1}


async def test_a_late_turn_is_not_held_past_its_deadline(whisper, turns, alone):
    asr = batcher(whisper, batch_window_ms=5000)
    try:
        first = asyncio.create_task(asr.transcribe(turns[0][1]))  # deadline: the 20 s budget
        await asyncio.sleep(0.2)
        late_deadline = time.monotonic() + 0.3
        late = asyncio.create_task(asr.transcribe(turns[1][1], deadline=late_deadline))
        results = await asyncio.gather(first, late)
        opened = asr.batches[0].dispatched_at - asr.batches[0].waited_ms / 1000

        # A turn whose deadline has already passed goes at once, alone.
        overdue = await asr.transcribe(turns[2][1], deadline=time.monotonic() - 1)
    finally:
        await asr.aclose()

    together, alone_batch = asr.batches
    assert together.size == 2 and together.reason == DispatchReason.DEADLINE
    assert together.earliest_deadline == late_deadline
    assert together.dispatched_at < opened + 5.0  # it did not wait out the 5 s window
    assert [r.text for r in results] == [alone[0].text, alone[1].text]
    assert alone_batch.size == 1 and alone_batch.reason == DispatchReason.DEADLINE
    assert alone_batch.waited_ms < 5000
    assert overdue.text == alone[2].text


async def test_bad_input_and_settings_are_refused(whisper):
    with pytest.raises(ValueError, match="below"):
        BatchingTranscriber(whisper, AsrSettings(batch_window_ms=400), budget_ms=350)
    with pytest.raises(ValueError, match="budget.asr_ms"):
        IvrSettings(asr={"batch_window_ms": 400})
    asr = batcher(whisper)
    try:
        with pytest.raises(ValueError, match="int16"):
            await asr.transcribe(np.zeros(16000, dtype=np.float32))
        with pytest.raises(ValueError, match="non-empty"):
            await asr.transcribe(np.zeros(0, dtype=np.int16))
    finally:
        await asr.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await asr.transcribe(np.zeros(16000, dtype=np.int16))


async def test_closing_leaves_no_turn_waiting(whisper, turns):
    asr = batcher(whisper)
    waiting = [asyncio.create_task(asr.transcribe(samples)) for _, samples in turns[:8]]
    while not asr._running:  # the batch of 8 has gone to the model
        await asyncio.sleep(0.001)
    await asr.aclose()
    for task in waiting:
        with pytest.raises(RuntimeError, match="closed"):
            await task


async def test_only_turns_primed_alike_share_a_pass(whisper, turns):
    """A turn primed with the menu's words and one answering with digits (no prompt) arrive
    together: each is decoded with its own prompt, as alone; turns with the same prompt batch."""
    hint = "Order status, billing question, refund, payment."
    single = WhisperTranscriber(whisper, AsrSettings())
    (_, a), (_, b), (_, c) = turns[:3]
    want = [single.transcribe(a, 16000, hint=hint).text, single.transcribe(b, 16000).text,
            single.transcribe(c, 16000, hint=hint).text]
    asr = batcher(whisper, batch_window_ms=2000, max_batch=8)
    try:
        got = await asyncio.gather(asr.transcribe(a, hint=hint), asr.transcribe(b),
                                   asr.transcribe(c, hint=hint))
    finally:
        await asr.aclose()
    assert [t.text for t in got] == want
    assert sorted(batch.size for batch in asr.batches) == [1, 2]
