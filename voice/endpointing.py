"""End-of-turn policy: a small state machine fed (stream seconds, is-speech) per frame.

It knows nothing about audio or models (the VAD supplies the speech decision), so it is tested
with literal timelines. See ``TurnSettings`` for the two-step decision (early pause, confirmation).

Why not pipecat's VADAnalyzer/turn analyzers: they have one stop time per analyzer, while a phone
flow needs the wait to depend on what was said (a trailing "and", digits read out in groups) and a
speculative step that starts ASR before the turn is confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from intents.dialogue.turns import Expect
from intents.entities import (
    CARD_MAX_DIGITS,
    YesNo,
    digit_string,
    is_complete_card,
    spoken_date,
    yes_or_no,
)
from voice.app.settings import TurnSettings


class TurnEventKind(StrEnum):
    SPEECH_STARTED = "speech-started"
    EARLY_PAUSE = "early-pause"
    SPEECH_RESUMED = "speech-resumed"
    TURN_ENDED = "turn-ended"


@dataclass(frozen=True)
class TurnEvent:
    kind: TurnEventKind
    at_s: float  # stream time at which the decision was taken
    speech_start_s: float
    speech_end_s: float  # end of the last speech frame so far
    forced: bool = False  # turn cut by max_turn_s rather than by silence


_RESUME_FRAMES = 2  # consecutive speech frames that resume a paused turn (one frame is a click)


class TurnSegmenter:
    """Turns a per-frame speech decision into caller turns."""

    def __init__(self, settings: TurnSettings, frame_s: float) -> None:
        if frame_s <= 0:
            raise ValueError("frame_s must be positive")
        self.settings = settings
        self.frame_s = frame_s
        self._reset()

    def _reset(self) -> None:
        self.in_turn = False  # SPEECH_STARTED fired, TURN_ENDED not yet
        self.paused = False  # EARLY_PAUSE fired, waiting for confirmation or resumption
        self._candidate_start: float | None = None
        self._speech_s = 0.0  # speech accumulated by the candidate or the turn
        self.speech_start_s = 0.0
        self.speech_end_s = 0.0
        self._resume_run = 0
        self.required_silence_ms: float | None = None  # None while the transcript is pending

    @property
    def speech_s(self) -> float:
        """Seconds of speech in the current turn (or candidate onset)."""
        return self._speech_s

    def push(self, t_s: float, is_speech: bool) -> list[TurnEvent]:
        """Feed one frame that ends at stream time ``t_s``."""
        events: list[TurnEvent] = []
        frame_start = t_s - self.frame_s
        if not self.in_turn:
            if is_speech:
                if self._candidate_start is None:
                    self._candidate_start = frame_start
                self._speech_s += self.frame_s
                self.speech_end_s = t_s
                if self._speech_s * 1000 >= self.settings.min_speech_ms:
                    self.in_turn = True
                    self.speech_start_s = self._candidate_start
                    events.append(self._event(TurnEventKind.SPEECH_STARTED, t_s))
            elif self._candidate_start is not None and \
                    (t_s - self.speech_end_s) * 1000 >= self.settings.early_pause_ms:
                self._reset()  # a blip too short to be speech
            return events

        if is_speech:
            self._speech_s += self.frame_s
            if self.paused:
                self._resume_run += 1
                if self._resume_run >= _RESUME_FRAMES:
                    self.paused = False
                    self.required_silence_ms = None
                    self.speech_end_s = t_s
                    events.append(self._event(TurnEventKind.SPEECH_RESUMED, t_s))
            else:
                self.speech_end_s = t_s
        else:
            self._resume_run = 0
            silence_ms = (t_s - self.speech_end_s) * 1000
            if not self.paused and silence_ms >= self.settings.early_pause_ms:
                self.paused = True
                self.required_silence_ms = None
                events.append(self._event(TurnEventKind.EARLY_PAUSE, t_s))
            events.extend(self._maybe_end(t_s))

        if self.in_turn and t_s - self.speech_start_s >= self.settings.max_turn_s:
            events.append(self._event(TurnEventKind.TURN_ENDED, t_s, forced=True))
            self._reset()
        return events

    def set_required_silence(self, silence_ms: float, now_s: float) -> list[TurnEvent]:
        """Called when the speculative transcript tells how long to wait; may end the turn now."""
        if not (self.in_turn and self.paused):
            return []
        self.required_silence_ms = silence_ms
        return self._maybe_end(now_s)

    def end_now(self, t_s: float) -> TurnEvent | None:
        """The caller's audio ended (hang-up, end of file): close a turn in progress."""
        event = None
        if self.in_turn:
            event = self._event(TurnEventKind.TURN_ENDED, t_s, forced=True)
        self._reset()
        return event

    def _maybe_end(self, t_s: float) -> list[TurnEvent]:
        if not self.paused:
            return []
        silence_ms = (t_s - self.speech_end_s) * 1000
        # While the transcript is pending, wait at most as long as the longest rule would.
        required = self.required_silence_ms
        if required is None:
            required = max(self.settings.digits_silence_ms, self.settings.incomplete_silence_ms)
        if silence_ms + 1e-6 < required:
            return []
        event = self._event(TurnEventKind.TURN_ENDED, t_s)
        self._reset()
        return [event]

    def _event(self, kind: TurnEventKind, t_s: float, forced: bool = False) -> TurnEvent:
        return TurnEvent(kind, t_s, self.speech_start_s, self.speech_end_s, forced)


_TRAILING_WORDS = frozenset(
    ["and", "or", "but", "so", "because", "um", "uh", "er", "erm", "the", "a", "an", "to", "of",
     "with", "for", "like", "if", "then", "that", "which", "my", "your", "our"])
_DIGIT_WORDS = frozenset(
    ["zero", "oh", "o", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
     "double", "triple"])


def _ends_with_digits(words: list[str]) -> int:
    """How many digit tokens (figures or spoken digits) end the utterance."""
    count = 0
    for word in reversed(words):
        if word.isdigit() or word in _DIGIT_WORDS:
            count += 1
        else:
            break
    return count


def required_silence_ms(text: str, settings: TurnSettings, *, expect_digits: bool = False) -> float:
    """How long to wait after ``text`` before deciding the caller has finished.

    A sentence that trails off, or a number still being read out, gets more time; the rest gets
    the short confirmation wait.
    """
    stripped = text.strip()
    words = [w.strip(".,!?;:-\"'").lower() for w in stripped.split()]
    words = [w for w in words if w]
    if not words:
        return settings.confirm_silence_ms
    trailing_digits = _ends_with_digits(words)
    if trailing_digits and (expect_digits or trailing_digits >= 3):
        return settings.digits_silence_ms
    if stripped.endswith((",", "...", "-")):
        return settings.incomplete_silence_ms
    if stripped.endswith((".", "?", "!")):  # Whisper's own sentence end: trust it
        return settings.confirm_silence_ms
    if words[-1] in _TRAILING_WORDS:
        return settings.incomplete_silence_ms
    return settings.confirm_silence_ms


class ValueProgress(StrEnum):
    """How far the caller has got with the value the flow expects."""

    NONE = "none"  # no value in the words yet: the sentence rules decide
    INCOMPLETE = "incomplete"  # part of it (four digits of six, a card failing Luhn, a month)
    COMPLETE = "complete"  # all of it, and valid


_MONTH_WORDS = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")


def value_progress(text: str, expect: Expect, length: int | None = None,
                   today: date | None = None) -> ValueProgress:
    """Read the speculative transcript against the value the flow expects.

    ``length`` is the number of digits of an expected number (the order number's, from the
    menu); without it a digit string is never known to be complete.
    """
    if _hallucinated(text):
        return ValueProgress.NONE
    if expect == Expect.DIGITS:
        digits = digit_string(text)
        if not digits:
            return ValueProgress.NONE
        if length is None:
            return ValueProgress.NONE
        # More digits than the value has is no valid value either: Whisper repeats itself on
        # short clips ("two, three, two, three, ..." for "four four two three").
        return ValueProgress.COMPLETE if len(digits) == length else ValueProgress.INCOMPLETE
    if expect == Expect.CARD:
        digits = digit_string(text)
        if not digits:
            return ValueProgress.NONE
        if is_complete_card(digits) or len(digits) >= CARD_MAX_DIGITS:
            return ValueProgress.COMPLETE
        return ValueProgress.INCOMPLETE
    if expect == Expect.DATE:
        if spoken_date(text, today or date.today()) is not None:
            return ValueProgress.COMPLETE
        words = [w.strip(".,!?") for w in text.lower().split()]
        if any(w in _MONTH_WORDS for w in words):  # "March" ... "the fifth"
            return ValueProgress.INCOMPLETE
        return ValueProgress.NONE
    if expect == Expect.YES_NO:
        return ValueProgress.COMPLETE if yes_or_no(text) != YesNo.UNSURE else ValueProgress.NONE
    return ValueProgress.NONE


def _hallucinated(text: str) -> bool:
    """Whisper's loop on a short clip of a phone line: the same word four times running, or the
    same two or three words three times ("6, 8, 8, 8, 8, 8", "two, three, two, three, two,
    three"). A caller reading "8 8 8 8" is then only kept waiting for the pause allowance."""
    words = [w.strip(".,!?;:-\"'").lower() for w in text.split()]
    words = [w for w in words if w]
    for n, times in ((1, 4), (2, 3), (3, 3)):
        for end in range(n * times, len(words) + 1):
            window = words[end - n * times: end]
            if all(window[i] == window[i % n] for i in range(len(window))):
                return True
    return False


def implausible_gain(text: str, before: str | None, new_speech_s: float,
                     settings: TurnSettings) -> bool:
    """The transcript gained more digits than ``new_speech_s`` voiced seconds since ``before``
    could hold at ``min_digit_speech_ms`` a digit, one spare."""
    gained = len(digit_string(text) or "") - len(digit_string(before or "") or "")
    return gained > int(new_speech_s * 1000 / settings.min_digit_speech_ms) + 1


def _continues(before: str | None, text: str) -> bool:
    """The digits of ``text`` start with those heard before in the turn (or none were)."""
    earlier = digit_string(before) if before else None
    return not earlier or (digit_string(text) or "").startswith(earlier)


_MAY_BE_MISHEARD_VALUE = {Expect.DIGITS: True, Expect.CARD: True, Expect.DATE: True}
_MISHEARD_MAX_WORDS = 3


@dataclass(frozen=True)
class TurnWait:
    """The silence a turn needs before it ends, and the rule that chose it (for the record)."""

    silence_ms: float
    rule: str


def turn_wait(text: str, settings: TurnSettings, expect: Expect = Expect.ANYTHING,
              length: int | None = None, smart_turn_p: float | None = None,
              heard_before: str | None = None, suspect: bool = False) -> TurnWait:
    """The fused end-of-turn rule at the early pause.

    1. An expected value decides alone: complete and valid ends after
       ``value_complete_silence_ms``; incomplete keeps listening ``value_pause_ms`` after each
       digit group. Smart Turn is not asked: the end of a digit group sounds final. A complete
       number whose digits do not continue those of the turn's previous speculative transcript
       (``heard_before``) is not trusted: Whisper rewrote what it heard, so it may be wrong now;
       nor one of a turn in which a transcript once gained more digits than the caller had said
       (``suspect``, see ``implausible_gain``: Whisper heard "6" as "5 5").
    2. Otherwise the transcript rule (``required_silence_ms``); where it finds the sentence
       complete, Smart Turn's probability may shorten the wait to ``smart_turn_silence_ms``
       (confident complete) or lengthen it to ``incomplete_silence_ms`` (confident incomplete).
    """
    progress = value_progress(text, expect, length)
    if progress == ValueProgress.COMPLETE and not _continues(heard_before, text):
        return TurnWait(settings.value_pause_ms, "value-unstable")
    if progress == ValueProgress.COMPLETE and suspect:
        return TurnWait(settings.value_pause_ms, "value-implausible")
    if progress == ValueProgress.COMPLETE:
        return TurnWait(settings.value_complete_silence_ms, "value-complete")
    if progress == ValueProgress.INCOMPLETE:
        return TurnWait(settings.value_pause_ms, "value-incomplete")
    if not text.strip():
        return TurnWait(settings.confirm_silence_ms, "no-words")
    if _MAY_BE_MISHEARD_VALUE.get(expect, False) and (expect != Expect.DIGITS or length) and \
            (len(text.split()) <= _MISHEARD_MAX_WORDS or _hallucinated(text)):
        # A value is expected and a few words came back with none in them: on a phone line a
        # lone digit is misheard as a word ("POD", "Okay."); waiting as for a digit group keeps
        # a caller who is reading the number from being cut off after its first digits.
        return TurnWait(settings.value_pause_ms, "value-unclear")
    wait = required_silence_ms(text, settings, expect_digits=expect == Expect.DIGITS)
    if wait != settings.confirm_silence_ms or smart_turn_p is None:
        return TurnWait(wait, "text")
    if smart_turn_p >= settings.smart_turn_complete:
        return TurnWait(max(settings.early_pause_ms, settings.smart_turn_silence_ms),
                        "smart-turn-complete")
    if smart_turn_p < settings.smart_turn_incomplete:
        return TurnWait(settings.incomplete_silence_ms, "smart-turn-incomplete")
    return TurnWait(wait, "text")
