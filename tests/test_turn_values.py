"""Value-aware end of turn on literal timelines: the turn ends when the expected value is
complete and valid, and never while it is still being read out."""

from __future__ import annotations

import random

import pytest

from intents.dialogue.turns import Expect
from voice.app.settings import TurnSettings
from voice.endpointing import TurnEventKind as K
from voice.endpointing import (
    TurnSegmenter,
    ValueProgress,
    implausible_gain,
    turn_wait,
    value_progress,
)

FRAME = 0.02
WORDS = ["four", "five", "six", "seven", "one", "two"]


def read_out(settings: TurnSettings, words: list[str], pauses: list[float], *,
             expect: Expect = Expect.DIGITS, length: int | None = 6, asr_s: float = 0.1,
             digit_s: float = 0.36, tail_s: float = 3.0):
    """Digits read one by one with the given pauses. At each early pause the transcript of what
    was said so far arrives ``asr_s`` later and sets the wait, as the listen stage does.

    Returns (events, the stream time each digit's speech ended)."""
    seg = TurnSegmenter(settings, FRAME)
    timeline = []
    for i, _ in enumerate(words):
        timeline.append((True, digit_s))
        timeline.append((False, pauses[i] if i < len(pauses) else tail_s))
    t, events, digit_ends, pending = 0.0, [], [], []
    said = 0
    for speech, seconds in timeline:
        if speech:
            said += 1
        for _ in range(round(seconds / FRAME)):
            t = round(t + FRAME, 6)
            for event in seg.push(t, speech):
                events.append(event)
                if event.kind == K.EARLY_PAUSE:
                    pending.append((round(t + asr_s, 6), " ".join(words[:said])))
            for due, text in [p for p in pending if p[0] <= t + 1e-9]:
                pending.remove((due, text))
                wait = turn_wait(text, settings, expect, length)
                events += seg.set_required_silence(wait.silence_ms, t)
        if speech:
            digit_ends.append(t)
    return events, digit_ends


@pytest.mark.parametrize("seed", range(20))
def test_six_digits_read_with_long_pauses_are_never_cut_before_the_sixth(seed):
    settings = TurnSettings()
    rng = random.Random(seed)
    pauses = [rng.uniform(0.4, 0.9) for _ in range(5)]
    asr_s = rng.choice([0.06, 0.2, 0.35])
    events, digit_ends = read_out(settings, WORDS, pauses, asr_s=asr_s)
    ended = [e for e in events if e.kind == K.TURN_ENDED]
    assert len(ended) == 1, f"the number was cut into {len(ended)} turns"
    assert ended[0].speech_end_s == pytest.approx(digit_ends[-1])
    # Ended by the value rule, not the longest wait: the silence the caller waited.
    waited = ended[0].at_s - digit_ends[-1]
    confirm = max(settings.value_complete_silence_ms / 1000, settings.early_pause_ms / 1000 + asr_s)
    assert waited <= confirm + FRAME + 1e-9
    assert waited < settings.value_pause_ms / 1000 / 2


def test_a_complete_value_ends_within_one_frame_of_the_confirming_silence():
    settings = TurnSettings()
    events, digit_ends = read_out(settings, WORDS, [0.5, 0.9, 0.4, 0.7, 0.6], asr_s=0.02)
    (ended,) = [e for e in events if e.kind == K.TURN_ENDED]
    confirming = digit_ends[-1] + settings.value_complete_silence_ms / 1000
    assert confirming - 1e-9 <= ended.at_s <= confirming + FRAME + 1e-9


def test_a_late_transcript_of_a_complete_value_ends_the_turn_as_it_arrives():
    settings = TurnSettings()
    events, digit_ends = read_out(settings, WORDS, [0.5] * 5, asr_s=0.4)
    (ended,) = [e for e in events if e.kind == K.TURN_ENDED]
    arrived = digit_ends[-1] + settings.early_pause_ms / 1000 + 0.4
    assert arrived - 1e-9 <= ended.at_s <= arrived + FRAME + 1e-9


def test_an_incomplete_value_keeps_listening_for_the_group_pause_allowance():
    settings = TurnSettings()
    events, digit_ends = read_out(settings, WORDS[:4], [0.5, 0.5, 0.5])  # four digits of six
    (ended,) = [e for e in events if e.kind == K.TURN_ENDED]
    waited = ended.at_s - digit_ends[-1]
    assert waited == pytest.approx(settings.value_pause_ms / 1000, abs=FRAME + 1e-9)


def test_groups_read_with_a_long_pause_between_them_stay_one_turn():
    settings = TurnSettings()
    pauses = [0.3, 0.3, 1.4, 0.3, 0.3]  # "four five six ... seven one two"
    events, digit_ends = read_out(settings, WORDS, pauses)
    ended = [e for e in events if e.kind == K.TURN_ENDED]
    assert len(ended) == 1 and ended[0].speech_end_s == pytest.approx(digit_ends[-1])


def test_without_a_known_length_a_digit_string_waits_the_long_digits_wait():
    settings = TurnSettings()
    events, digit_ends = read_out(settings, WORDS, [0.5] * 5, length=None)
    (ended,) = [e for e in events if e.kind == K.TURN_ENDED]
    assert ended.at_s - digit_ends[-1] == pytest.approx(settings.digits_silence_ms / 1000,
                                                        abs=FRAME + 1e-9)


def test_what_counts_as_a_complete_value():
    p = value_progress
    assert p("4 5 6", Expect.DIGITS, 6) == ValueProgress.INCOMPLETE
    assert p("4, 5, 6.", Expect.DIGITS, 6) == ValueProgress.INCOMPLETE  # Whisper's full stop
    assert p("four five six seven one two", Expect.DIGITS, 6) == ValueProgress.COMPLETE
    assert p("It's 456-712.", Expect.DIGITS, 6) == ValueProgress.COMPLETE
    assert p("I don't have it", Expect.DIGITS, 6) == ValueProgress.NONE
    assert p("4 5 6", Expect.DIGITS, None) == ValueProgress.NONE  # no length: not known
    # Cards: the scheme's length and the Luhn check.
    assert p("4111 1111 1111 1111", Expect.CARD) == ValueProgress.COMPLETE
    assert p("4111 1111 1111", Expect.CARD) == ValueProgress.INCOMPLETE
    assert p("4111 1111 1111 1112", Expect.CARD) == ValueProgress.INCOMPLETE  # fails Luhn
    assert p("3782 822463 10005", Expect.CARD) == ValueProgress.COMPLETE  # Amex, 15
    # Dates and yes/no.
    assert p("March", Expect.DATE) == ValueProgress.INCOMPLETE
    assert p("March the fifth", Expect.DATE) == ValueProgress.COMPLETE
    assert p("next Tuesday", Expect.DATE) == ValueProgress.COMPLETE
    assert p("Yes, that's right.", Expect.YES_NO) == ValueProgress.COMPLETE
    assert p("No", Expect.YES_NO) == ValueProgress.COMPLETE
    assert p("Hmm, let me think", Expect.YES_NO) == ValueProgress.NONE


def test_the_value_rule_wins_and_smart_turn_only_moves_a_complete_looking_sentence():
    s = TurnSettings()
    # An incomplete value keeps listening even if the audio sounds final.
    assert turn_wait("4 5 6.", s, Expect.DIGITS, 6, smart_turn_p=0.99).silence_ms == \
        s.value_pause_ms
    assert turn_wait("4 5 6 7 1 2", s, Expect.DIGITS, 6).rule == "value-complete"
    # Confident complete ends at the early pause; confident incomplete waits longer.
    assert turn_wait("Where is my order?", s, smart_turn_p=0.95).silence_ms == \
        s.smart_turn_silence_ms < s.confirm_silence_ms
    assert turn_wait("Where is my order?", s, smart_turn_p=0.05).silence_ms == \
        s.confirm_silence_ms  # by default "incomplete" never lengthens the wait
    wary = TurnSettings(smart_turn_incomplete=0.15)
    assert turn_wait("Where is my order?", wary, smart_turn_p=0.05).silence_ms == \
        s.incomplete_silence_ms
    assert turn_wait("Where is my order?", s, smart_turn_p=0.4).silence_ms == \
        s.confirm_silence_ms
    # A trailing "and" is incomplete whatever the model says.
    assert turn_wait("I want to check my order and", s, smart_turn_p=0.99).silence_ms == \
        s.incomplete_silence_ms


def test_a_value_whisper_may_have_misheard_is_not_trusted_to_end_the_turn():
    s = TurnSettings()
    # A lone digit heard as a word, or Whisper looping on a short clip: keep listening.
    assert turn_wait("Okay.", s, Expect.DIGITS, 6).rule == "value-unclear"
    assert turn_wait("6, 8, 8, 8, 8, 8,", s, Expect.DIGITS, 6).rule == "value-unclear"
    assert turn_wait("Take a, two, three, two, three, three", s, Expect.DIGITS, 6).silence_ms \
        == s.value_pause_ms
    # Six digits that do not continue the ones heard before in the turn.
    assert turn_wait("2 3 2 3 3 3", s, Expect.DIGITS, 6, heard_before="6 8").rule == \
        "value-unstable"
    assert turn_wait("6 8 2 3 3 1", s, Expect.DIGITS, 6, heard_before="6 8").rule == \
        "value-complete"
    # A transcript that once gained more digits than the speech could hold.
    assert implausible_gain("2 5 5 5 3", "2 5", 0.4, s)
    assert not implausible_gain("2 5 6 3", "2 5", 0.8, s)
    assert not implausible_gain("4 5 6", None, 0.9, s)  # a group read in one breath
    assert turn_wait("2 5 5 5 3 4", s, Expect.DIGITS, 6, suspect=True).rule == \
        "value-implausible"
    # Without an expected value, a short answer is just a short answer.
    assert turn_wait("Okay.", s).silence_ms == s.confirm_silence_ms
