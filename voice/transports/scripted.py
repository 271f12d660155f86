"""A scripted caller: recordings and key presses played in turn, each after the IVR's reply.

The line of a spoken regression cohort (``ivr eval``). Like ``RecordedLine`` (whose clock,
pacing and two-sided recording it reuses) it is full duplex on one 20 ms clock, in real time or
faster; unlike it, the caller waits for the IVR: after each step it listens until a reply has
started and ended (or none came for ``no_reply_s``), pauses, then plays the next step. Keys go
to the call as RFC 4733 events, the way a SIP trunk delivers them.

A step is ``("say", samples)`` or ``("keys", "123#")``, each with its pause before it. The line
hangs up after the last step's reply, or as soon as ``stop()`` says so (the caller was handed
to a human: the rest of the script is not the IVR's to hear).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voice.audio import AudioChunk, resample
from voice.transports.base import LineEvent, LineEventKind, LineInfo
from voice.transports.recorded import RecordedLine

NO_REPLY_S = 5.0  # stream seconds after a step with no reply before the caller goes on
FIRST_WAIT_S = 0.3  # a step's reply cannot have come sooner than this after it
KEY_GAP_S = 0.12  # between two key presses


@dataclass(frozen=True)
class ScriptStep:
    kind: str  # "say" or "keys"
    samples: np.ndarray | None = None  # at the line's rate, for "say"
    keys: str = ""
    pause_s: float = 0.6


class ScriptedLine(RecordedLine):
    """Plays ``steps`` as one caller; ``stop()`` True ends the call after the current reply."""

    def __init__(self, steps: list[ScriptStep], rate: int, frame_ms: int, *,
                 realtime: bool = False, info: LineInfo | None = None,
                 stop: Callable[[], bool] | None = None) -> None:
        super().__init__(AudioChunk(np.zeros(0, np.int16), rate), frame_ms, realtime=realtime,
                         tail_s=0.0, info=info or LineInfo(transport="recorded"))
        self.steps = steps
        self.stop = stop or (lambda: False)
        self._step = -1  # the greeting is the first reply the caller waits for
        self._pos = 0  # samples of the current "say" step already sent
        self._keys: list[tuple[int, str]] = []  # (tick, key) still to press
        self._waiting_since = 0  # tick the current wait began
        self._onsets_before = 0
        self._pause_left = 0

    @staticmethod
    def steps_from(parts: list[tuple[str, AudioChunk | str, float]], rate: int
                   ) -> list[ScriptStep]:
        """``(kind, audio or keys, pause_s)`` parts as steps at ``rate``."""
        out = []
        for kind, value, pause in parts:
            if kind == "say":
                assert isinstance(value, AudioChunk)
                out.append(ScriptStep("say", resample(value.samples, value.sample_rate, rate),
                                      pause_s=pause))
            else:
                out.append(ScriptStep("keys", keys=str(value), pause_s=pause))
        return out

    def _next_frame(self, i: int) -> np.ndarray | None:
        """The caller's frame for tick ``i``; None when the caller hangs up."""
        while self._keys and self._keys[0][0] <= i:
            self._events.put_nowait(LineEvent(LineEventKind.DTMF, digit=self._keys.pop(0)[1],
                                              method="rfc4733"))
        step = self.steps[self._step] if 0 <= self._step < len(self.steps) else None
        if step is not None and step.kind == "say" and self._pos < len(step.samples):
            pcm = step.samples[self._pos:self._pos + self.frame]
            self._pos += self.frame
            if len(pcm) < self.frame:
                pcm = np.concatenate([pcm, self._silence[: self.frame - len(pcm)]])
            if self._pos >= len(step.samples):
                self._begin_wait(i)
            return pcm
        if self._keys:
            return self._silence
        if self._pause_left > 0:  # the caller's pause before the next step
            self._pause_left -= 1
            if self._pause_left == 0:
                self._start_step(i)
            return self._silence
        if not self._reply_over(i):
            return self._silence
        if self.stop() or self._step + 1 >= len(self.steps):
            return None
        self._pause_left = max(1, round(self.steps[self._step + 1].pause_s / self.frame_s))
        return self._silence

    def _begin_wait(self, i: int) -> None:
        self._waiting_since = i
        self._onsets_before = len(self.reply_onsets)

    def _start_step(self, i: int) -> None:
        self._step += 1
        self._pos = 0
        step = self.steps[self._step]
        if step.kind == "keys":
            gap = max(1, round(KEY_GAP_S / self.frame_s))
            self._keys = [(i + 1 + n * gap, key) for n, key in enumerate(step.keys)]
            self._begin_wait(i + 1 + len(step.keys) * gap)

    def _reply_over(self, i: int) -> bool:
        """The IVR answered the last step and has finished talking (or gave up answering)."""
        session = self._session
        waited = (i - self._waiting_since) * self.frame_s
        if waited < FIRST_WAIT_S or not session.settled or session.reply_pending:
            return False
        if self._was_playing:
            return False
        return len(self.reply_onsets) > self._onsets_before or waited >= NO_REPLY_S
