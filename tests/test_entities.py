"""Spoken entities, as Whisper writes telephone speech, and one from real ASR output."""

from __future__ import annotations

import pytest

from intents.entities import YesNo, amount, digit_groups, digit_string, mask_card_numbers, yes_or_no

from conftest import CALLS


@pytest.mark.parametrize("said, digits", [
    ("four five six seven", "4567"),
    ("4 5 6 7", "4567"),
    ("My order number is 4-5-6, 7.", "4567"),
    ("oh double five three", "0553"),
    ("it's one two three four for the account", "1234"),
    ("triple nine two", "9992"),
    ("I'd like to talk to someone for a minute", None),
])
def test_digit_strings(said, digits):
    assert digit_string(said, min_digits=2) == digits


def test_digits_read_back_in_groups():
    assert digit_groups("4567123") == "4 5 6, 7 1 2, 3"


@pytest.mark.parametrize("said, answer", [
    ("Yes, that's right.", YesNo.YES), ("Yeah.", YesNo.YES), ("Nope.", YesNo.NO),
    ("No, that's not it.", YesNo.NO), ("Hmm, I think so?", YesNo.UNSURE),
])
def test_yes_no(said, answer):
    assert yes_or_no(said) == answer


def test_amounts():
    assert amount("I was charged $42.50 twice") == 42.50
    assert amount("about 1,200 dollars") == 1200.0
    assert amount("no amount here") is None


def test_card_numbers_are_masked_to_the_last_four():
    said = "my card is 4111 1111 1111 1234 expiry next year"
    assert mask_card_numbers(said) == "my card is [card ending 1234] expiry next year"
    assert mask_card_numbers("order 4567") == "order 4567"
    assert mask_card_numbers("It's 4,111,111,111,111,234.") == "It's [card ending 1234]."
    assert mask_card_numbers("about 1,200.50 dollars") == "about 1,200.50 dollars"


def test_real_asr_output_of_a_number_read_with_pauses(engines, calls_manifest):
    from voice.audio import read_audio, resample

    audio = read_audio(CALLS / "digits_8k.wav")
    u = calls_manifest["digits_8k"]["utterances"][0]
    speech = resample(audio.samples[int((u["start_s"] - 0.2) * 8000):int((u["end_s"] + 0.1) * 8000)],
                      8000, 16000)
    text = engines.transcriber.transcribe(speech, 16000).text
    assert digit_string(text) == "4567", text


@pytest.mark.parametrize("said, expected", [
    ("It was charged on November 23rd.", "2026-11-23"),
    ("the twenty third of November", "2026-11-23"),
    ("on the 2nd of January", "2027-01-02"),
    ("11/30", "2026-11-30"),
    ("tomorrow please", "2026-11-23"),
    ("next Tuesday", "2026-11-24"),
    ("March 3, 2027", "2027-03-03"),
    ("no date here", None),
    ("February 30th", None),
])
def test_spoken_dates(said, expected):
    from datetime import date

    from intents.entities import spoken_date

    result = spoken_date(said, today=date(2026, 11, 22))  # a Sunday
    assert (result.isoformat() if result else None) == expected
