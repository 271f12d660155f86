"""Order numbers read aloud digit by digit by real speakers, with pauses, over a phone line.

Built at run time from the Free Spoken Digit Dataset recordings in tests/fixtures/digits (two
speakers, five takes of each digit): each digit string is six digits with pauses drawn from
0.3-1.0 s, resampled to nothing (FSDD is 8 kHz already) and passed through G.711 mu-law. Used by
the false-cut-off test and by the latency benches' digit-string turns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice.audio import AudioChunk, read_audio, telephone_channel

DIGITS_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "digits"
SPEAKERS = ("george", "jackson")
RATE = 8000


@dataclass
class DigitString:
    number: str
    speaker: str
    audio: AudioChunk  # 8 kHz, mu-law coded and decoded
    digit_spans: list[tuple[float, float]]  # (start, end) of each digit's voice, seconds

    @property
    def last_digit_end_s(self) -> float:
        return self.digit_spans[-1][1]


def _voiced(samples: np.ndarray, rate: int) -> np.ndarray:
    """The digit without the recording's own leading and trailing quiet (5 ms steps above
    -40 dBFS), so the pause between digits is the one drawn."""
    step = rate // 200
    threshold = 32768.0 * 10 ** (-40 / 20)
    levels = [np.sqrt(np.mean(samples[i:i + step].astype(np.float64) ** 2))
              for i in range(0, len(samples) - step + 1, step)]
    loud = [i for i, level in enumerate(levels) if level > threshold]
    if not loud:
        return samples
    return samples[loud[0] * step: (loud[-1] + 1) * step]


def build_digit_strings(count: int = 50, *, length: int = 6, seed: int = 13,
                        pause_s: tuple[float, float] = (0.3, 1.0), lead_s: float = 0.6,
                        tail_s: float = 2.5, digits_dir: Path = DIGITS_DIR) -> list[DigitString]:
    """``count`` digit strings, alternating speakers, reproducible from ``seed``."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        speaker = SPEAKERS[n % len(SPEAKERS)]
        number = "".join(rng.choice("0123456789") for _ in range(length))
        pieces = [np.zeros(int(lead_s * RATE), np.int16)]
        spans, at = [], lead_s
        for i, digit in enumerate(number):
            chunk = read_audio(digits_dir / f"{digit}_{speaker}_{rng.randrange(5)}.wav")
            if chunk.sample_rate != RATE:
                raise ValueError(f"FSDD digits are {RATE} Hz, got {chunk.sample_rate}")
            voiced = _voiced(chunk.samples, RATE)
            pieces.append(voiced)
            spans.append((at, at + len(voiced) / RATE))
            at += len(voiced) / RATE
            gap = rng.uniform(*pause_s) if i < length - 1 else tail_s
            pieces.append(np.zeros(int(gap * RATE), np.int16))
            at += int(gap * RATE) / RATE
        audio = telephone_channel(AudioChunk(np.concatenate(pieces), RATE))
        out.append(DigitString(number, speaker, audio, spans))
    return out
