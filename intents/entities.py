"""Spoken entities as Whisper writes telephone speech: digit strings, amounts, yes/no.

Pure functions over text, tested with literal strings and with real ASR output. Whisper mixes
figures and words ("4 5 six seven"), writes "oh" for zero, "double five" for 55, and groups
digits with spaces, commas or hyphens; all of that comes out as one digit string.
"""

from __future__ import annotations

import re
from enum import StrEnum

_DIGITS = {"zero": "0", "oh": "0", "o": "0", "nought": "0", "one": "1", "two": "2", "to": "2",
           "too": "2", "three": "3", "four": "4", "for": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9"}
_REPEAT = {"double": 2, "triple": 3}
_TENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
         "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
# Homophones of digits ("to", "for") count only between other digits.
_AMBIGUOUS = {"to", "too", "for", "o"}


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+", text.lower().replace("-", " "))


def digit_string(text: str, *, min_digits: int = 1) -> str | None:
    """The longest run of spoken or written digits in ``text``, as figures.

    "four five six seven" -> "4567"; "oh double five 3" -> "0553"; "4-5-6, 7" -> "4567".
    """
    tokens = _tokens(text)
    best, run, repeat = "", "", 1
    for i, token in enumerate(tokens):
        piece = None
        if token.isdigit():
            piece = token
        elif token in _REPEAT:
            repeat = _REPEAT[token]
            continue
        elif token in _DIGITS:
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            between_digits = bool(run) and (following.isdigit() or following in _REPEAT or
                                            (following in _DIGITS and following not in _AMBIGUOUS))
            if token not in _AMBIGUOUS or between_digits:
                piece = _DIGITS[token]
        elif token in _TENS and run:  # "four five twenty" read as digits then a pair
            piece = str(_TENS[token])
        if piece is None:
            best, run, repeat = max(best, run, key=len), "", 1
            continue
        run += piece[0] * (repeat - 1) + piece if repeat > 1 else piece
        repeat = 1
    best = max(best, run, key=len)
    return best if len(best) >= min_digits else None


def digit_groups(digits: str, size: int = 3) -> str:
    """How a number is read back for confirmation: "4567123" -> "4 5 6, 7 1 2, 3"."""
    groups = [digits[i:i + size] for i in range(0, len(digits), size)]
    return ", ".join(" ".join(g) for g in groups)


class YesNo(StrEnum):
    YES = "yes"
    NO = "no"
    UNSURE = "unsure"


_YES = re.compile(r"\b(yes|yeah|yep|yup|correct|right|sure|exactly|affirmative|that's it|"
                  r"that is right|sounds good|okay|ok|please do|go ahead)\b")
_NO = re.compile(r"\b(no|nope|nah|wrong|incorrect|not right|negative|don't|do not|isn't|"
                 r"that's not)\b")


def yes_or_no(text: str) -> YesNo:
    """A confirmation answer; a "no" anywhere wins over a "yes" ("yes, no wait")."""
    lowered = text.lower()
    if _NO.search(lowered):
        return YesNo.NO
    if _YES.search(lowered):
        return YesNo.YES
    return YesNo.UNSURE


_AMOUNT = re.compile(r"[$£€]\s?(\d[\d,]*(?:\.\d{1,2})?)|(\d[\d,]*(?:\.\d{1,2})?)\s?"
                     r"(dollars?|pounds?|euros?|bucks)")


def amount(text: str) -> float | None:
    """A money amount as Whisper writes it: "$42.50", "42 dollars", "1,200 pounds"."""
    match = _AMOUNT.search(text.lower())
    if not match:
        return None
    figures = (match.group(1) or match.group(2)).replace(",", "")
    return float(figures)


def mask_card_numbers(text: str) -> str:
    """Card numbers never leave in clear: keep the last four digits of any 13-19 digit run."""
    def mask(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return f"[card ending {digits[-4:]}]"

    return re.sub(r"\b(?:\d[ -]?){12,18}\d\b", mask, text)
