"""Speech hints: ASR is primed with the menu's words while the caller may say anything, and with
nothing while the flow waits for a value (an order number, a yes or a no)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import ctranslate2
import numpy as np
import pytest
from conftest import CALLS

from intents.config import load_menu
from intents.dialogue.turns import CallerTurn, CallInfo, Expect, Reply
from voice.app.simulate import simulate_call
from voice.audio import ASR_SAMPLE_RATE, read_audio, resample
from voice.inference.batching import BatchingTranscriber

COHORT_AUDIO = Path(__file__).resolve().parents[1] / "cohorts" / "retail_billing" / "audio"


def test_the_menu_primes_asr_with_its_intents_unless_told_otherwise():
    menu = load_menu(None)
    assert menu.speech_hints is None
    assert menu.speech_hint() == (
        "Order status, billing question, refund, payment, technical support, opening hours, "
        "address change, cancel service, talk to human.")  # not out_of_scope
    own = menu.model_copy(update={"speech_hints": ["track my parcel", " UPS ", ""]})
    assert own.speech_hint() == "Track my parcel, UPS."  # the designer's words, case kept
    assert menu.model_copy(update={"speech_hints": []}).speech_hint() is None


def test_the_hint_is_the_prompt_whisper_continues_from(engines):
    transcriber = engines.transcriber
    tokenizer = transcriber._tokenizer("en")
    plain = transcriber.prompt("en")
    primed = transcriber.prompt("en", "Refund, payment.")
    assert primed[0] == tokenizer.sot_prev
    assert primed[len(primed) - len(plain):] == plain
    assert tokenizer.decode(primed[1:len(primed) - len(plain)]).strip() == "Refund, payment."
    assert transcriber.prompt("en", "  ") == plain
    assert len(transcriber.prompt("en", "word " * 1000)) == len(plain) + 1 + 100  # capped


def test_a_noisy_callers_request_is_heard_in_the_menus_words(engines):
    """An espeak caller through a noisy, lossy line asking for a refund: unprimed, tiny.en hears
    "a reason"; primed with the shipped menu's words, "a refund"."""
    audio = read_audio(COHORT_AUDIO / "refund-broken-item.wav")
    speech = resample(audio.samples, audio.sample_rate, ASR_SAMPLE_RATE)
    hint = load_menu(None).speech_hint()
    plain = engines.transcriber.transcribe(speech, ASR_SAMPLE_RATE).text.lower()
    primed = engines.transcriber.transcribe(speech, ASR_SAMPLE_RATE, hint=hint).text.lower()
    assert "refund" in primed and "broken" in primed, primed
    assert "refund" not in plain, plain  # else this recording no longer shows the hint's effect



def _noise_burst(seed: int) -> np.ndarray:
    """1.5 s of line silence with a 0.2 s burst of noise in it (a cough, a knock), 16 kHz."""
    rng = np.random.default_rng(seed)
    clip = np.zeros(int(1.5 * ASR_SAMPLE_RATE))
    start = int(0.6 * ASR_SAMPLE_RATE)
    clip[start:start + int(0.2 * ASR_SAMPLE_RATE)] = rng.normal(0, 6000, int(0.2 * ASR_SAMPLE_RATE))
    return clip.astype(np.int16)


async def test_priming_does_not_turn_a_noise_burst_into_words(engines, settings):
    """Primed, Whisper's own no-speech score for a noise burst falls under the threshold and
    tiny.en writes "Okay." with some confidence; the decision is taken from the unprimed decode,
    so the burst is dropped as it is unprimed: alone and in a batched pass."""
    transcriber = engines.transcriber
    hint = load_menu(None).speech_hint()
    burst = _noise_burst(0)
    assert transcriber.transcribe(burst, ASR_SAMPLE_RATE).is_empty
    primed = transcriber.transcribe(burst, ASR_SAMPLE_RATE, hint=hint)
    assert primed.is_empty and (primed.dropped or "").startswith("no-speech unprimed"), primed
    # without the unprimed step the prompt's own score would have let text through
    audio_s, window = transcriber.encoder_window(burst)
    encoded = transcriber.model.model.encode(ctranslate2.StorageView.from_array(window[None]),
                                             to_cpu=False)
    prompt = transcriber.prompt("en", hint)
    raw = transcriber.model.model.generate(encoded, [prompt], max_length=len(prompt) + 20,
                                           **transcriber.generate_options())[0]
    assert not transcriber.is_no_speech(raw, "en") and transcriber.is_no_speech(
        transcriber.model.model.generate(encoded, [transcriber.prompt("en")], max_length=20,
                                         **transcriber.generate_options())[0], "en")

    asr = BatchingTranscriber(transcriber.model, settings.asr, budget_ms=20_000)
    try:
        got = await asyncio.gather(asr.transcribe(burst, hint=hint),
                                   asr.transcribe(_noise_burst(1), hint=hint))
    finally:
        await asr.aclose()
    assert [batch.size for batch in asr.batches] == [2]
    assert all(t.is_empty for t in got), [t.text for t in got]


class _AsksForDigits:
    """Greets with an open question, asks for digits after the first turn, then asks again."""

    speech_hint = "Order status, payment."

    def __init__(self) -> None:
        self.turns = 0

    async def start_call(self, call: CallInfo) -> Reply | None:
        return Reply(text="How can I help?")

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        self.turns += 1
        if self.turns == 1:
            return Reply(text="Your order number, please.", expect=Expect.DIGITS,
                         expect_length=6)
        return Reply(text="Thanks. Anything else?")

    async def handle_dtmf(self, digits: str) -> Reply | None:
        return None

    async def end_call(self, reason: str) -> None:
        return None


@pytest.mark.parametrize("enabled", [True, False])
async def test_open_questions_are_primed_and_expected_values_are_not(settings, engines,
                                                                     monkeypatch, enabled):
    """The real call path, watched at the engines: every ASR request of the first turn (an open
    question) carries the handler's hint; those of the digits turn carry none."""
    heard: list[tuple[str | None, str]] = []
    transcribe = engines.transcribe

    async def watched(audio16, transcriber=None, *, hint=None):
        transcript = await transcribe(audio16, transcriber, hint=hint)
        heard.append((hint, transcript.text))
        return transcript

    monkeypatch.setattr(engines, "transcribe", watched)
    on = settings.model_copy(update={"asr": settings.asr.model_copy(
        update={"speech_hints": enabled})})
    result = await simulate_call(CALLS / "two_turns_8k.wav", on, realtime=False,
                                 handler=_AsksForDigits())
    assert len(result.turns) == 2, [t.caller_text for t in result.turns]
    assert heard, "no ASR request was made"
    hints = [hint for hint, _ in heard]
    # the first turn's requests come first; the rest belong to the turn after the digits prompt
    first = hints[: next((i for i, h in enumerate(hints) if h is None), len(hints))]
    if enabled:
        assert first and all(h == "Order status, payment." for h in first), hints
        assert hints[len(first):] and all(h is None for h in hints[len(first):]), hints
    else:
        assert all(h is None for h in hints), hints
