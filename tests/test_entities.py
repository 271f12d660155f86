"""Spoken entities, as Whisper writes telephone speech, and one from real ASR output."""

from __future__ import annotations

import pytest
from conftest import CALLS

from intents.entities import (
    YesNo,
    amount,
    digit_groups,
    digit_runs,
    digit_string,
    find_card,
    is_complete_card,
    luhn_valid,
    mask_card_numbers,
    yes_or_no,
)


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


@pytest.mark.parametrize("heard, last_four", [
    # What Whisper wrote for cards read out over the phone: separators, words, mixed, run-ons.
    ("My card is 4111 1111 1111 1111 1227.", "1111"),  # the expiry in the same breath
    ("4,111,111,111,111,111", "1111"),
    ("It's 4,111,111,111,111,111,111,111,111,111,111,1.", "1111"),  # 34 digits
    ("5555-5555-5555-4444, expires 12 27", "4444"),
    ("four one one one, one one one one, one one one one, one one one one", "1111"),
    ("4 1 1 1, one one one one, 1 1 1 1, one one one one", "1111"),
    ("5 5 5 5. 5 5 5 5. 4 4 4 4. 4 4 4 4", "4444"),  # fails Luhn (misheard): masked all the same
    ("3782 822463 10005 and the code is 1234", "0005"),  # Amex, 15 digits
    ("4111 uh 1111 um 1111 1111", "1111"),
    ("six zero one one, one one one one, one one one one, one one one seven", "1117"),
    ("5105105105105100 123", "5100"),  # Mastercard then its security code
    ("4222222222222", "2222"),  # a 13-digit Visa
])
def test_whisper_spellings_of_card_numbers_keep_only_the_cards_last_four(heard, last_four):
    masked = mask_card_numbers(heard)
    assert f"[card ending {last_four}]" in masked, masked
    assert all(len(digits) < 13 for _, _, digits in digit_runs(masked)), masked
    assert "one one one one" not in masked and "1111 1111" not in masked


def test_luhn_and_where_the_card_lies_in_a_run():
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112") and not luhn_valid("41x1")
    assert find_card("41111111111111111227") == (0, 16)  # card, then the expiry
    assert find_card("4111111111111234") == (0, 16)  # one digit misheard: still the card
    assert find_card("123") is None
    assert is_complete_card("4111111111111111") and is_complete_card("378282246310005")
    assert not is_complete_card("4222222222222")  # 13-digit Visas end with '#'
    assert not is_complete_card("4111111111111112") and not is_complete_card("9111111111111116")


def test_a_masked_marker_is_never_read_as_a_number():
    assert digit_string("[card ending 1111]", min_digits=4) is None
    assert digit_string("it's [card ending 1234] and 4 5 6 7") == "4567"
    assert digit_runs("[card ending 1111]") == []
    assert mask_card_numbers("[card ending 1111]") == "[card ending 1111]"
    assert digit_string("4 5 6 uh 7 1 2") == "456712"  # a hesitation inside a number


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
