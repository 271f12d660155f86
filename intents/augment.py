"""Spoken-style rewrites of a menu's examples, for training only.

A menu author types "I want to pay 50 dollars"; a caller's words reach the classifier through
Whisper as "Um, I want to pay $50." or "I, I want to pay fifty dollars". These rewrites add,
beside each example, versions with what speech adds: a filler at the start ("um", "so", "yeah"),
a repeated first word (a false start), numbers written as Whisper writes them
(digits and symbols: "fifty dollars" -> "$50", "three" -> "3") or spelled out where the example
has digits, and Whisper's capitals and final punctuation. They are deterministic for a seed, so
a menu trains the same classifier every time.

They never invent content words: an intent's meaning stays what the author wrote.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

FILLERS = ("um", "uh", "so", "yeah", "okay", "hi", "well", "hello")

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
_NUMBER_WORDS = re.compile(
    r"\b((?:" + "|".join(sorted(_WORD_VALUE, key=len, reverse=True)) + r")(?:[ -](?:"
    + "|".join(_UNITS[1:10]) + r"))?)(?: (hundred|thousand))?\b", re.IGNORECASE)
_CURRENCY = re.compile(r"\$?(\d[\d,]*(?:\.\d+)?) ?(dollars|dollar|bucks)\b", re.IGNORECASE)
_DIGITS = re.compile(r"\b\d{1,3}\b")


def spell(n: int) -> str:
    """0-999 in words, as an author might type them."""
    if n < 20:
        return _UNITS[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _UNITS[n % 10])
    rest = n % 100
    return _UNITS[n // 100] + " hundred" + ("" if rest == 0 else " " + spell(rest))


def _words_to_number(match: re.Match) -> str:
    words, scale = match.group(1).lower(), match.group(2)
    value = sum(_WORD_VALUE.get(part, 0) for part in re.split(r"[ -]", words))
    if scale:
        value *= 100 if scale.lower() == "hundred" else 1000
    return str(value)


def whisper_numbers(text: str) -> str:
    """Numbers as Whisper writes them: "fifty dollars" -> "$50", "two" -> "2"."""
    out = _NUMBER_WORDS.sub(_words_to_number, text)
    return _CURRENCY.sub(lambda m: f"${m.group(1)}", out)


def spelled_numbers(text: str) -> str:
    """Digits as an author types them in words: "2 bags" -> "two bags"."""
    return _DIGITS.sub(lambda m: spell(int(m.group(0))), text.replace("$", ""))


def whisper_case(text: str, question: bool | None = None) -> str:
    """A capital first letter and a final stop or question mark, as Whisper writes."""
    text = text.strip()
    if not text:
        return text
    question = question if question is not None else _QUESTION.match(text)
    end = "" if text[-1] in ".?!" else ("?" if question else ".")
    return text[0].upper() + text[1:] + end


_QUESTION = re.compile(r"(?i)(what|when|where|who|why|how|can|could|do|does|is|are|will|would|"
                        r"should|did|may)\b")


def rewrites(text: str, rng: random.Random) -> list[str]:
    """Spoken-style variants of one example (without the example itself), deduplicated."""
    words = text.split()
    out = []
    filler = rng.choice(FILLERS)
    out.append(whisper_case(f"{filler}, {text}", bool(_QUESTION.match(text))))
    if len(words) >= 3:
        out.append(f"{words[0]} {words[0]} {' '.join(words[1:])}")  # a false start
    numbers = whisper_numbers(text)
    if numbers != text:
        out.append(whisper_case(numbers))
    spelled = spelled_numbers(text)
    if spelled != text:
        out.append(spelled)
    seen = {text.lower()}
    unique = []
    for variant in out:
        if variant.lower() not in seen:
            seen.add(variant.lower())
            unique.append(variant)
    return unique


def augment(texts: Sequence[str], labels: Sequence[str], *, seed: int = 0,
            skip: frozenset[str] | set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """The examples followed by their spoken-style rewrites (labels in ``skip``, such as the
    out-of-scope class, are kept as written)."""
    rng = random.Random(seed)
    out_t, out_l = list(texts), list(labels)
    for text, label in zip(texts, labels):
        if label in skip:
            continue
        for variant in rewrites(text, rng):
            out_t.append(variant)
            out_l.append(label)
    return out_t, out_l
