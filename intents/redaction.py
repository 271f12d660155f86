"""Secrets out of transcripts and handoff packages, as a contact centre handles them.

Card numbers keep their last four digits (what an agent needs to tell cards apart); CVV, PIN,
social security numbers, passwords and security answers are removed. Text is read as Whisper
writes telephone speech: digits as figures, as words ("four one one one"), or both.

Two triggers: a keyword just before the digits ("my PIN is 4 3 2 1"), and the flow itself, which
knows when it asked for a secret (``asked_for``): then the whole answer is treated as that secret.
A final scan (``scan``) runs over a package before it is written anywhere.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from intents.entities import (
    CARD_MIN_DIGITS,
    card_last_four,
    card_marker,
    digit_runs,
    mask_card_numbers,
    replace_runs,
)


class Secret(StrEnum):
    CARD = "card"
    CVV = "cvv"
    PIN = "pin"
    SSN = "ssn"
    PASSWORD = "password"
    SECURITY_ANSWER = "security answer"
    EXPIRY = "expiry"


# Slot names a flow may collect that hold a secret; their values never reach the state.
SECRET_SLOTS: dict[str, Secret] = {
    "card_number": Secret.CARD, "cvv": Secret.CVV, "pin": Secret.PIN, "ssn": Secret.SSN,
    "password": Secret.PASSWORD, "security_answer": Secret.SECURITY_ANSWER,
    "card_expiry": Secret.EXPIRY,
}
# Secrets the flow takes only by keypad: while one is asked for, the caller's speech is not
# transcribed at all (PCI DSS: card numbers out of ASR, transcripts and logs).
KEYPAD_ONLY: frozenset[Secret] = frozenset({Secret.CARD})
# The key of a reply's metadata that names the secret slot the flow now collects; a turn
# handler sets it, the voice pipeline pauses ASR while it names a keypad-only slot.
SECRET_SLOT_KEY = "secret_slot"


def keypad_only(slot: str | None) -> bool:
    """Whether the flow slot ``slot`` is a secret taken by keypad with ASR paused."""
    return slot is not None and SECRET_SLOTS.get(slot) in KEYPAD_ONLY

# How far before a digit run a keyword still names it (about six spoken words).
_KEYWORD_WINDOW = 40
_BEFORE_DIGITS = (
    (Secret.SSN, re.compile(r"\b(social security|ssn|social)\b"), 9, 9),
    (Secret.CVV, re.compile(r"\b(cvv2?|cvc|cv2|security code|verification code|"
                            r"(?:digits|numbers) on the back)\b"), 3, 4),
    (Secret.PIN, re.compile(r"\b(pin|passcode)\b"), 4, 8),
)
# A card named in the same breath: a shorter run after it is still the card, with digits lost
# to the phone line or to ASR ("my card, the number is 5,55,55,55,55,44" is a Mastercard read
# with four fives missing). "cart" is Whisper's usual mishearing of "card" on 8 kHz audio.
_CARD_WORD = re.compile(r"\b(card|cart|visa|master ?card|amex|american express|discover|"
                        r"credit|debit)\b")
_CARD_WINDOW = 80
_MISHEARD_CARD_DIGITS = 8  # longer than any order number, PIN or date this IVR asks for
# Three or four digits said just after a card are its expiry or security code.
_AFTER_CARD_WINDOW = 30
_SSN_WRITTEN = re.compile(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")
_PHRASE = re.compile(r"\b(password|passphrase|pass phrase|passcode|security answer|"
                     r"memorable word|mother'?s maiden name)(\s+(?:is|was|it's|would be)\b)?"
                     r"\s*:?\s*([^.,;!?]+)", re.I)
_LONG_RUN = CARD_MIN_DIGITS  # the shortest card number; the final scan removes any run this long
_NUMBER_WORD = (r"(?:\d{1,4}|zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
                r"twelve|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)\b")
# A card's expiry date after its keyword, in figures or words: "expiry 12/27", "it expires
# twelve twenty seven", "valid thru 1227"; "expi..." also catches Whisper's "expirary".
_EXPIRY = re.compile(r"\b(expi[a-z]*|exp|valid (?:until|thru|through))"
                     r"((?:\s+(?:date|is|was|on|in|it's))*)\s*:?\s*"
                     rf"({_NUMBER_WORD}(?:[\s/.,-]+{_NUMBER_WORD})*)", re.I)


def _marker(secret: Secret, digits: str = "") -> str:
    if secret == Secret.CARD:
        return card_marker(card_last_four(digits))
    return f"[{secret} redacted]"


def redact(text: str, *, asked_for: Secret | None = None) -> str:
    """``text`` with every secret replaced by a marker; ``asked_for`` is the secret the flow
    had just asked for, if any (then the caller's whole answer is that secret)."""
    if asked_for in (Secret.PASSWORD, Secret.SECURITY_ANSWER, Secret.EXPIRY):
        return _marker(asked_for) if text.strip() else text
    text = mask_card_numbers(text)
    text = _EXPIRY.sub(lambda m: f"{m.group(1)}{m.group(2)} {_marker(Secret.EXPIRY)}", text)
    text = _SSN_WRITTEN.sub(_marker(Secret.SSN), text)
    out, last = [], 0
    card_ends = [m.end() for m in re.finditer(r"\[card ending \d{4}\]", text)]
    for start, end, digits in digit_runs(text):
        after_card = any(0 <= start - e <= _AFTER_CARD_WINDOW for e in card_ends)
        marker = _keyword_marker(text, last, start, digits, after_card=after_card)
        if marker is not None:
            out += [text[last:start], marker]
            last = end
            if marker.startswith("[card ending"):
                card_ends.append(end)
    text = "".join(out) + text[last:]
    if asked_for is not None:  # a number was asked for: every other number in the answer is it
        # (after the keyword rules: "my PIN is 4 3 2 1" said while a card is asked for is a PIN)
        text = replace_runs(text, lambda d: _marker(asked_for, d) if len(d) >= 3 else None)
    return _PHRASE.sub(_phrase_marker, text)


def _keyword_marker(text: str, last: int, start: int, digits: str, *,
                    after_card: bool) -> str | None:
    """The marker for the digit run at ``start`` by what was said before it, or None.
    ``last`` is where the text already replaced ends (a keyword there is spent);
    ``after_card``: a card number ended just before the run."""
    window = text[max(last, start - _KEYWORD_WINDOW):start].lower()
    for secret, keyword, shortest, longest in _BEFORE_DIGITS:
        if shortest <= len(digits) <= longest and keyword.search(window):
            return _marker(secret)
    card_window = text[max(last, start - _CARD_WINDOW):start].lower()
    if _MISHEARD_CARD_DIGITS <= len(digits) < CARD_MIN_DIGITS and \
            _CARD_WORD.search(card_window):
        return _marker(Secret.CARD, digits)
    if 3 <= len(digits) <= 4 and after_card:
        month = int(digits[:-2]) if len(digits) == 4 else 0
        return _marker(Secret.EXPIRY if 1 <= month <= 12 else Secret.CVV)
    return None


def _phrase_marker(match: re.Match) -> str:
    secret = Secret.PASSWORD if "pass" in match.group(1).lower() else Secret.SECURITY_ANSWER
    return f"{match.group(1)}{match.group(2) or ''} {_marker(secret)}"


def redact_keyed(digits: str, *, asked_for: Secret | None = None) -> str:
    """Keyed DTMF digits as they may appear in a transcript."""
    if asked_for is not None:
        return _marker(asked_for, digits)
    return redact(digits)


def _scan_text(text: str) -> str:
    return mask_card_numbers(text)  # every run of 13 or more digits, whatever it is


def scan(value: Any) -> Any:
    """The final scan before a package is written: any string holding a run of 13 or more
    digits, in figures or in words, gets it masked to the last four; an integer that long is
    refused (it can only be a card or account secret that slipped into a structured field)."""
    if isinstance(value, str):
        return _scan_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if len(str(abs(value))) >= _LONG_RUN:
            raise ValueError(f"refusing to write a {len(str(abs(value)))}-digit number; "
                             "card-like numbers must be masked before they reach the package")
        return value
    if isinstance(value, dict):
        return {k: scan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scan(v) for v in value]
    return value
