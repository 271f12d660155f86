"""Spoken entities as Whisper writes telephone speech: digit strings, amounts, dates, yes/no.

Pure functions over text, tested with literal strings and with real ASR output. Whisper mixes
figures and words ("4 5 six seven"), writes "oh" for zero, "double five" for 55, and groups
digits with spaces, commas or hyphens; all of that comes out as one digit string.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
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
# Hesitations a caller makes in the middle of a long number; they do not end the number.
_FILLERS = {"uh", "um", "er", "erm", "ah", "hmm", "mm"}
# A masked value ("[card ending 1111]", "[pin redacted]", "[keyed ...]") or an ASR annotation
# ("[BLANK_AUDIO]"): opaque to every parser here, so a masked card is never read as a number.
MASKED = re.compile(r"\[[^\[\]]*\]")


def without_masked(text: str) -> str:
    """``text`` with each bracketed marker replaced by a word that ends any number around it."""
    return MASKED.sub(" masked ", text)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+", without_masked(text).lower().replace("-", " "))


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
        elif token in _FILLERS and run:
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


_TOKEN = re.compile(r"[A-Za-z]+|\d+")
_LIGHT_GAP = re.compile(r"[\s,.\-]{0,3}")  # what may sit between the groups of one number


def digit_runs(text: str) -> list[tuple[int, int, str]]:
    """Every run of spoken or written digits in ``text``: (start, end, digits as figures).

    The same reading as ``digit_string`` ("four one one one, 1111" -> "41111111"), with the
    span it covers in ``text`` so that it can be replaced; groups may be separated by spaces,
    commas, periods, hyphens or a hesitation ("uh"), as Whisper writes them. Masked markers
    are skipped and end a run.
    """
    # Same length, so spans still index ``text``; '#' is neither a token nor a light gap.
    opaque = MASKED.sub(lambda m: "#" * len(m.group(0)), text)
    tokens = [(m.start(), m.end(), m.group(0).lower()) for m in _TOKEN.finditer(opaque)]
    runs: list[tuple[int, int, str]] = []
    start = end = 0
    digits, repeat = "", 1

    def close() -> None:
        nonlocal digits, repeat
        if digits:
            runs.append((start, end, digits))
        digits, repeat = "", 1

    for i, (t_start, t_end, token) in enumerate(tokens):
        if digits and not _LIGHT_GAP.fullmatch(opaque[end:t_start]):
            close()
        piece = None
        if token.isdigit():
            piece = token
        elif token in _FILLERS and digits:
            following = tokens[i + 1][2] if i + 1 < len(tokens) else ""
            if (following.isdigit() or following in _DIGITS or following in _REPEAT) and \
                    _LIGHT_GAP.fullmatch(opaque[t_end:tokens[i + 1][0]]):
                end = t_end  # "4111 uh 1111": one number
                continue
        elif token in _REPEAT:
            following = tokens[i + 1][2] if i + 1 < len(tokens) else ""
            if following.isdigit() or following in _DIGITS:
                repeat = _REPEAT[token]
                if not digits:
                    start = t_start
                end = t_end
                continue
        elif token in _DIGITS:
            following = tokens[i + 1][2] if i + 1 < len(tokens) else ""
            between_digits = bool(digits) and (following.isdigit() or following in _REPEAT or
                                               (following in _DIGITS and
                                                following not in _AMBIGUOUS))
            if token not in _AMBIGUOUS or between_digits:
                piece = _DIGITS[token]
        elif token in _TENS and digits:
            piece = str(_TENS[token])
        if piece is None:
            close()
            continue
        if not digits and repeat == 1:
            start = t_start
        digits += piece[0] * (repeat - 1) + piece if repeat > 1 else piece
        repeat, end = 1, t_end
    close()
    return runs


def replace_runs(text: str, replace) -> str:
    """``text`` with each digit run for which ``replace(digits)`` returns a string replaced."""
    out, last = [], 0
    for start, end, digits in digit_runs(text):
        new = replace(digits)
        if new is not None:
            out += [text[last:start], new]
            last = end
    return "".join(out) + text[last:]


CARD_MIN_DIGITS, CARD_MAX_DIGITS = 13, 19


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card_lengths(digits: str) -> tuple[int, ...]:
    """The lengths a card number starting with ``digits`` has, likeliest first (by its issuer
    prefix: Amex 15, Diners 14, Visa 16/13/19, Mastercard 16, Discover/JCB/UnionPay 16-19);
    empty where the prefix belongs to no card scheme."""
    if digits[:2] in ("34", "37"):
        return (15,)
    if digits[:2] in ("36", "38", "39") or "300" <= digits[:3] <= "305":
        return (14,)
    if digits[:1] == "4":
        return (16, 13, 19)
    if "51" <= digits[:2] <= "55" or "2221" <= digits[:4] <= "2720":
        return (16,)
    if digits[:2] in ("35", "62", "65") or digits[:4] == "6011" or "644" <= digits[:3] <= "649":
        return (16, 19, 17, 18)
    return ()


def is_complete_card(digits: str) -> bool:
    """A keyed entry that is a whole card: Luhn-valid at its scheme's usual length. Only the
    likeliest length counts, so that a 16-digit Visa is not cut at 13 digits by chance (one
    prefix in ten is Luhn-valid); the rare 13- and 19-digit cards end with '#'."""
    lengths = card_lengths(digits)
    return bool(lengths) and len(digits) == lengths[0] and luhn_valid(digits)


def find_card(digits: str) -> tuple[int, int] | None:
    """Where the card number lies in a run of digits, as (start, end), or None.

    Said alone, the run is the card. Said with more digits in the same breath, one 13-19
    digit stretch of it passes the Luhn check, but so does one stretch in ten by chance, so
    the likeliest is taken:

    1. a Luhn-valid stretch at its scheme's usual length (Visa, Mastercard, Discover, JCB 16,
       Amex 15, Diners 14), the earliest (callers give the card, then the expiry);
    2. else the run itself, if 13-19 digits long (a rarer length, or a digit misheard);
    3. else any Luhn-valid 13-19 digit stretch, the earliest, 16 digits first.
    """
    usual: tuple[int, int] | None = None
    other: tuple[tuple[int, int], int, int] | None = None
    for start in range(len(digits) - CARD_MIN_DIGITS + 1):
        lengths = card_lengths(digits[start:])
        for length in range(CARD_MIN_DIGITS, min(CARD_MAX_DIGITS, len(digits) - start) + 1):
            if not luhn_valid(digits[start:start + length]):
                continue
            if lengths and length == lengths[0]:
                if usual is None:
                    usual = (start, start + length)
                continue
            key = (start, 0 if length == 16 else 1)
            if other is None or key < other[0]:
                other = (key, start, start + length)
        if usual is not None:
            return usual
    if CARD_MIN_DIGITS <= len(digits) <= CARD_MAX_DIGITS:
        return 0, len(digits)
    return None if other is None else (other[1], other[2])


def card_marker(last_four: str) -> str:
    return f"[card ending {last_four}]"


def card_last_four(digits: str) -> str:
    """The last four of the card in ``digits`` (``find_card``), else of ``digits`` itself."""
    found = find_card(digits)
    return digits[found[1] - 4:found[1]] if found else digits[-4:]


def _mask_run(digits: str) -> str | None:
    return card_marker(card_last_four(digits)) if len(digits) >= CARD_MIN_DIGITS else None


def mask_card_numbers(text: str) -> str:
    """Card numbers never leave in clear, whichever way Whisper wrote them.

    Every run of 13 or more digits, after reading words and groups as figures ("4111 1111 1111
    1111", "4,111,111,111,111,111", "four one one one ...", "4 1 1 1, one one one one, ..."),
    becomes "[card ending NNNN]". NNNN is the last four of the card found in the run
    (``find_card``: a Luhn-valid card at its usual length, else the run itself), else the
    run's own last four.

    The whole run goes, not only the card: digits said straight after a card in the same
    breath are almost always its expiry date or security code ("4111 1111 1111 1111 1227"),
    which are as sensitive as the number, and a 13+ digit run that is not a card is no value
    this IVR asks for (order numbers have six digits). Shorter runs stay.
    """
    return replace_runs(text, _mask_run)


_MONTHS = {m: i for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"], 1)}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
             "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
             "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
             "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
             "thirtieth": 30}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _day_number(words: list[str]) -> int | None:
    """'23rd', '23', 'twenty third', 'thirty first' -> the day of the month."""
    text = " ".join(words)
    match = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", text)
    if match:
        return int(match.group(1))
    for tens, base in (("twenty", 20), ("thirty", 30)):
        for word, n in _ORDINALS.items():
            if f"{tens} {word}" in text or f"{tens}-{word}" in text:
                return base + n
    for word, n in sorted(_ORDINALS.items(), key=lambda kv: -len(kv[0])):
        if re.search(rf"\b{word}\b", text):
            return n
    return None


def spoken_date(text: str, today: date) -> date | None:
    """A date as callers say it: "November 23rd", "the twenty third of November", "11/23",
    "tomorrow", "next Tuesday". A date without a year is the next one on or after today."""
    lowered = text.lower()
    if "today" in lowered:
        return today
    if "tomorrow" in lowered:
        return today + timedelta(days=1)
    if "yesterday" in lowered:
        return today - timedelta(days=1)
    for i, name in enumerate(_WEEKDAYS):
        if re.search(rf"\b{name}\b", lowered):
            ahead = (i - today.weekday()) % 7 or 7
            return today + timedelta(days=ahead)
    numeric = re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", lowered)
    month, day, year = None, None, None
    if numeric:  # US order, as the contact centre's callers write and say it
        month, day = int(numeric.group(1)), int(numeric.group(2))
        year = int(numeric.group(3)) if numeric.group(3) else None
        if year is not None and year < 100:
            year += 2000
    else:
        words = re.findall(r"[a-z]+|\d+(?:st|nd|rd|th)?", lowered)
        month = next((_MONTHS[w] for w in words if w in _MONTHS), None)
        if month is None:
            return None
        day = _day_number([w for w in words if w not in _MONTHS])
        year_match = re.search(r"\b(20\d\d)\b", lowered)
        year = int(year_match.group(1)) if year_match else None
    if day is None:
        return None
    try:
        candidate = date(year or today.year, month, day)
    except ValueError:
        return None
    if year is None and candidate < today:
        candidate = date(today.year + 1, month, day)
    return candidate
