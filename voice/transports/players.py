"""Audio sources a call leg's port can play instead of the pipeline: hold music, a briefing.

Each is a callable returning one frame of int16 PCM, called on PJSIP's media clock thread; it only
slices a precomputed buffer.
"""

from __future__ import annotations

import functools
import threading

import numpy as np


@functools.cache  # the same few seconds for every transfer at a rate
def hold_music(rate: int, seconds: float = 8.0) -> bytes:
    """A quiet, slow arpeggio (synthesized: no licence, no file): tells the caller the line is
    alive without being mistaken for speech by the agent or by a VAD."""
    notes = [523.25, 659.25, 783.99, 659.25]  # C5 E5 G5 E5
    note_s = seconds / 8
    t = np.arange(int(rate * note_s)) / rate
    envelope = np.exp(-3.0 * t / note_s) * (1 - np.exp(-t * 200))
    pieces = []
    for i in range(8):
        f = notes[i % len(notes)]
        tone = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 2 * f * t)
        pieces.append(tone * envelope)
    audio = np.concatenate(pieces) * 0.08 * 32767  # about -25 dBFS peaks
    return audio.astype(np.int16).tobytes()


class LoopPlayer:
    """Plays ``pcm`` over and over."""

    def __init__(self, pcm: bytes, frame_bytes: int) -> None:
        pad = (-len(pcm)) % frame_bytes
        self.pcm = pcm + bytes(pad)
        self.frame_bytes = frame_bytes
        self.offset = 0

    def __call__(self) -> bytes:
        frame = self.pcm[self.offset:self.offset + self.frame_bytes]
        self.offset = (self.offset + self.frame_bytes) % len(self.pcm)
        return frame


class OncePlayer:
    """Plays ``pcm`` once, then silence; ``finished`` is set after the last frame left."""

    def __init__(self, pcm: bytes, frame_bytes: int) -> None:
        pad = (-len(pcm)) % frame_bytes
        self.pcm = pcm + bytes(pad)
        self.frame_bytes = frame_bytes
        self.offset = 0
        self.finished = threading.Event()

    def __call__(self) -> bytes | None:
        if self.offset >= len(self.pcm):
            self.finished.set()
            return None
        frame = self.pcm[self.offset:self.offset + self.frame_bytes]
        self.offset += self.frame_bytes
        return frame
