"""Secrets out of what the agent, the store and the webhooks see, in Whisper's spelling."""

from __future__ import annotations

import pytest

from intents.entities import digit_runs, mask_card_numbers
from intents.redaction import Secret, redact, redact_keyed, scan


@pytest.mark.parametrize("heard", [
    "my card is 4111 1111 1111 1234",
    "my card is 4111-1111-1111-1234",
    "my card is 4,111,111,111,111,234",
    "my card is four one one one, one one one one, one one one one, one two three four",
    "my card is four one one one one one one one one one one one double one two three four",
    "my card is 4 1 1 1, one one one one, 1111, one 2 three four",
])
def test_a_card_number_keeps_only_its_last_four(heard):
    assert redact(heard).startswith("my card is [card ending ")
    assert redact(heard).endswith("234]")
    assert "1111" not in redact(heard) and "one one one" not in redact(heard)


def test_what_is_not_a_card_stays():
    for said in ("order 456712", "I was charged $42.50 twice", "about 1,200.50 dollars",
                 "four five six seven one two", "call me on 555 0100", "from 2 to 3"):
        assert redact(said) == said
    assert mask_card_numbers("order 4567") == "order 4567"


def test_digit_runs_give_spans_to_replace():
    text = "card 4111 1111, code one two three"
    assert [(text[s:e], d) for s, e, d in digit_runs(text)] == [
        ("4111 1111", "41111111"), ("one two three", "123")]


def test_cvv_pin_and_ssn_after_their_keyword():
    assert redact("and the security code is 1 2 3") == "and the security code is [cvv redacted]"
    assert redact("the CVV is four five six") == "the CVV is [cvv redacted]"
    assert redact("My PIN is 4 3 2 1.") == "My PIN is [pin redacted]."
    assert redact("my social security number is 123-45-6789") == \
        "my social security number is [ssn redacted]"
    assert redact("my social is one two three four five six seven eight nine") == \
        "my social is [ssn redacted]"
    assert redact("it's 078-05-1120") == "it's [ssn redacted]"
    # The keyword must be close: a PIN mentioned long before a number does not redact it.
    assert redact("I forgot my PIN so I am calling about my order number 4 5 6 7 1 2") == \
        "I forgot my PIN so I am calling about my order number 4 5 6 7 1 2"


def test_passwords_and_answers_when_said_or_when_the_flow_asked():
    assert redact("My password is hunter2, thanks") == "My password is [password redacted], thanks"
    assert redact("my mother's maiden name is Smith") == \
        "my mother's maiden name is [security answer redacted]"
    assert redact("blue elephant", asked_for=Secret.SECURITY_ANSWER) == \
        "[security answer redacted]"
    assert redact("it's 4 3 2 1", asked_for=Secret.PIN) == "it's [pin redacted]"
    assert redact_keyed("4321", asked_for=Secret.PIN) == "[pin redacted]"
    assert redact_keyed("4111111111111234") == "[card ending 1234]"
    assert redact_keyed("456712") == "456712"


def test_the_final_scan_masks_any_long_run_and_refuses_long_integers():
    package = {"summary": "caller read 4111111111111111234 twice", "n": [1, 2.5, None, True],
               "at": "2026-11-22T10:00:00.000+00:00", "phone": "+15550000001"}
    scanned = scan(package)
    # 19 digits: a Luhn-valid Visa (4111 1111 1111 1111) and three more: the card's last four.
    assert scanned["summary"] == "caller read [card ending 1111] twice"
    assert scanned["at"] == package["at"] and scanned["phone"] == package["phone"]
    with pytest.raises(ValueError, match="refusing to write a 16-digit number"):
        scan({"arguments": {"card": 4111111111111234}})


def test_a_card_misheard_short_is_still_a_card_when_a_card_was_named():
    # As tiny.en once wrote a Piper caller's "my card. The number is 5555 5555 5555 4444,
    # expiry 12 27": four fives lost, "card" heard as "cart", "expiry" as "expliry".
    heard = "I was charged twice on my cart, the number is 5,55,55,55,55,44,expliry 1227."
    assert redact(heard) == ("I was charged twice on my cart, the number is "
                             "[card ending 5544],expliry [expiry redacted].")
    assert redact("my visa 4111 1111 111, code 123") == \
        "my visa [card ending 1111], code [cvv redacted]"
    # No card named, or a number too short to be one: an order number stays.
    assert redact("order 456712, not my card") == "order 456712, not my card"
    assert redact("my card order 456712") == "my card order 456712"
    assert redact("I called 5 times about the card") == "I called 5 times about the card"


def test_an_expiry_after_its_keyword_and_a_card_with_its_expiry_in_one_breath():
    assert redact("it expires 12/27") == "it expires [expiry redacted]"
    # As tiny.en wrote a Piper caller's "expiry 12 27":
    assert redact("the number is [card ending 4444],expirary 1227.") == \
        "the number is [card ending 4444],expirary [expiry redacted]."
    assert redact("I expect 2 parcels") == "I expect 2 parcels"
    assert redact("expiry date is twelve twenty seven, thanks") == \
        "expiry date is [expiry redacted], thanks"
    assert redact("my card is 4111 1111 1111 1111 1227") == "my card is [card ending 1111]"
    assert redact("twelve twenty seven", asked_for=Secret.EXPIRY) == "[expiry redacted]"
    assert redact("my order expires tomorrow") == "my order expires tomorrow"


def test_the_final_scan_masks_over_long_runs_to_the_cards_last_four():
    scanned = scan({"text": "4,111,111,111,111,111,111,111,111,111,111,1", "n": 7})
    assert scanned == {"text": "[card ending 1111]", "n": 7}
    assert scan("card 5105105105105100 123") == "card [card ending 5100]"


def test_keypad_only_secrets():
    from intents.redaction import keypad_only

    assert keypad_only("card_number")
    assert not keypad_only("order_number") and not keypad_only("pin") and not keypad_only(None)
    assert redact_keyed("4111111111111111", asked_for=Secret.CARD) == "[card ending 1111]"
