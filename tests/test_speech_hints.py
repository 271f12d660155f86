"""Speech hints: ASR is primed with the menu's words while the caller may say anything, and with
nothing while the flow waits for a value (an order number, a yes or a no)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CALLS

from intents.config import load_menu
from intents.dialogue.turns import CallerTurn, CallInfo, Expect, Reply
from voice.app.simulate import simulate_call
from voice.audio import ASR_SAMPLE_RATE, read_audio, resample

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
