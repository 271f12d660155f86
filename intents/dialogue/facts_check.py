"""Checks LLM-written text (a spoken reply, a handoff summary) against the facts.

The embedded 135M model writes fluent falsehoods (docs/architecture.md), so a rewrite is accepted
only if every number, date, money amount and proper name in it comes from the facts the flow gave
it, and it claims no action the system of record did not confirm. Anything else falls back to the
template, which is built from the same facts and is always right.

A handoff summary quotes the caller, so its facts hold the caller's words ("I want a refund",
"charged twice"). For it the check is stricter (``actions_text``): an action claimed as done
("refunded", "cancelled") must be in what the IVR did or the CRM shows, not merely in what the
caller asked for; counts said in words ("three times") and states ("delayed", "lost",
"duplicate") must be in the facts like figures.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_CLAIMS = re.compile(r"\b(refund(?:ed)?|cancel(?:led|ed)?|credited|waived|upgraded|"
                     r"changed|updated|scheduled|booked|sent|issued|opened)\b", re.I)
_ALWAYS_OK = {"I", "I'm", "I'll", "Order", "Your", "Is", "Thanks", "Thank", "Sorry", "Please",
              "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
              "January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"}


_DIGIT_GROUPS = re.compile(r"\b\d(?:[ ,]+\d\b)+")  # "4 5 6, 7 1 2" as read back


def _numbers(text: str) -> list[str]:
    """Whole numbers as said: digit groups read back count as one number."""
    joined = _DIGIT_GROUPS.sub(lambda m: re.sub(r"\D", "", m.group(0)), text)
    return [n.replace(",", "") for n in _NUMBER.findall(joined)]


_PRESENT = {"refund", "cancel"}  # asked for, not done: may come from the caller's words
_COUNT_WORDS = {"twice", "thrice", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve", "dozen", "hundred", "thousand", "several",
                "multiple", "triple", "double"}
_STATE_WORDS = {"late", "delayed", "delivered", "lost", "missing", "damaged", "duplicate",
                "duplicated", "overdue", "fraud", "fraudulent", "stolen", "unauthorized",
                "unauthorised", "declined", "overcharged", "disputed", "suspended", "closed",
                "blocked", "locked"}


def violations(reply: str, facts_text: str, confirmed_actions: set[str] | None = None, *,
               actions_text: str | None = None) -> list[str]:
    """What in ``reply`` is not backed by ``facts_text`` (the template and tool results).

    With ``actions_text`` (what the system did and the records show, without the caller's
    words), claimed actions are checked against it alone, and counts in words and states
    (delayed, duplicate...) must be in ``facts_text`` too."""
    found: list[str] = []
    known_numbers = set(_numbers(facts_text))
    if actions_text is not None:  # "$59.00" in the facts backs "$59"
        known_numbers |= {n[:-3] for n in known_numbers if n.endswith(".00")}
    for number in _numbers(reply):
        if number not in known_numbers:
            found.append(f"number {number} is not in the facts")
    known_words = set(re.findall(r"[A-Za-z']+", facts_text))
    # A quotation opens a sentence and may end one: its first word is not a name either.
    for sentence in re.split(r"(?<=[.!?])\s+|(?<=[.!?][\"'”])\s+|\s+(?=[\"“])", reply):
        # A sentence's first word is not a name.
        for word in re.findall(r"[A-Za-z']+", sentence)[1:]:
            if word[0].isupper() and word not in known_words and word not in _ALWAYS_OK:
                found.append(f"name {word!r} is not in the facts")
    confirmed = {a.lower() for a in (confirmed_actions or set())}
    facts_lower = facts_text.lower()
    for claim in _CLAIMS.findall(reply):
        stem = claim.lower()[:4]  # "opened" matches the tool open_case
        done = facts_lower if actions_text is None or claim.lower() in _PRESENT else \
            actions_text.lower()
        if stem not in done and not any(stem in a for a in confirmed):
            found.append(f"claims '{claim}' with no confirmed action")
    if actions_text is not None:
        known_lower = {w.lower() for w in known_words}
        for word in re.findall(r"[A-Za-z]+", reply):
            lowered = word.lower()
            if lowered in _COUNT_WORDS and lowered not in known_lower:
                found.append(f"count '{word}' is not in the facts")
            elif lowered in _STATE_WORDS and lowered not in known_lower:
                found.append(f"state '{word}' is not in the facts")
    return found
