"""Property: whichever way Whisper writes a card number, no long digit run survives masking and
the card's last four are kept (hypothesis, seeded by the database in .hypothesis/)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from intents.entities import digit_runs, luhn_valid, mask_card_numbers
from intents.redaction import redact, scan

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Issuer prefixes at their usual lengths: Visa, Mastercard (51-55 and 2-series), Amex, Discover,
# Diners, JCB.
SCHEMES = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
           ("6011", 16), ("65", 16), ("36", 14), ("3528", 16)]


def with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@st.composite
def cards(draw) -> str:
    prefix, length = draw(st.sampled_from(SCHEMES))
    body = draw(st.text("0123456789", min_size=length - len(prefix) - 1,
                        max_size=length - len(prefix) - 1))
    return with_check_digit(prefix + body)


def groups(digits: str, size: int) -> list[str]:
    return [digits[i:i + size] for i in range(0, len(digits), size)]


def in_words(digits: str, draw) -> str:
    """Digit by digit in words, with the "oh" and "double" that callers and Whisper use."""
    out, i = [], 0
    while i < len(digits):
        d = digits[i]
        if i + 1 < len(digits) and digits[i + 1] == d and draw(st.booleans()):
            out.append(f"double {WORDS[int(d)]}")
            i += 2
            continue
        out.append("oh" if d == "0" and draw(st.booleans()) else WORDS[int(d)])
        i += 1
    return " ".join(out)


@st.composite
def whisper_style(draw, digits: str) -> str:
    """``digits`` as Whisper has written numbers read over the phone."""
    style = draw(st.sampled_from(["plain", "fours", "hyphens", "thousands", "words", "mixed",
                                  "singles", "hesitant", "periods"]))
    if style == "plain":
        return digits
    if style == "fours":
        return " ".join(groups(digits, 4))
    if style == "hyphens":
        return "-".join(groups(digits, 4))
    if style == "thousands":  # "4,111,111,111,111,111": groups of three from the right
        head = len(digits) % 3 or 3
        return ",".join([digits[:head]] + groups(digits[head:], 3))
    if style == "words":
        return ", ".join(in_words(g, draw) for g in groups(digits, 4))
    if style == "singles":
        return " ".join(digits)
    if style == "periods":
        return ". ".join(groups(digits, 4))
    parts = [in_words(g, draw) if draw(st.booleans()) else g for g in groups(digits, 4)]
    if style == "hesitant":
        return " uh ".join(parts)
    return ", ".join(parts)


@st.composite
def spoken_cards(draw) -> tuple[str, str, str]:
    """(what Whisper wrote, the card, the text around it), the card sometimes followed in the
    same breath by its expiry (MMYY) or security code."""
    card = draw(cards())
    said = draw(whisper_style(card))
    extra = draw(st.sampled_from(["", "expiry", "cvv"]))
    if extra == "expiry":
        month, year = draw(st.integers(1, 12)), draw(st.integers(25, 35))
        said += draw(st.sampled_from([" ", ", ", "-"])) + draw(whisper_style(f"{month:02}{year}"))
    elif extra == "cvv":
        said += draw(st.sampled_from([" ", ", "])) + draw(whisper_style(
            draw(st.text("0123456789", min_size=3, max_size=3))))
    before = draw(st.sampled_from(["", "My card number is ", "Yeah it's ", "okay "]))
    after = draw(st.sampled_from(["", ".", " thanks", ", is that okay?"]))
    return before + said + after, card, before


LONG_FIGURES = re.compile(r"\d(?:[\s,.\-]{0,3}\d){12,}")


@settings(max_examples=400, deadline=None)
@given(spoken_cards())
def test_no_card_survives_in_any_whisper_spelling(example):
    heard, card, before = example
    for masked in (mask_card_numbers(heard), redact(heard), scan(heard)):
        assert masked.startswith(f"{before}[card ending {card[-4:]}]"), (heard, masked)
        assert all(len(digits) < 13 for _, _, digits in digit_runs(masked)), (heard, masked)
        assert not LONG_FIGURES.search(masked), (heard, masked)
        assert mask_card_numbers(masked) == masked  # masking twice changes nothing


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789 ,.-abcdeilnorstuvwx", max_size=80))
def test_masking_never_leaves_a_long_run_in_any_text(text):
    masked = mask_card_numbers(text)
    assert all(len(digits) < 13 for _, _, digits in digit_runs(masked)), (text, masked)
    if all(len(digits) < 13 for _, _, digits in digit_runs(text)):
        assert masked == text  # nothing card-like: nothing changes
