"""In-band DTMF detection (Goertzel) for transports that carry only audio.

RFC 4733 events and SIP INFO arrive as DTMF frames already; this finds keypresses in the audio
itself. Works on 8 or 16 kHz int16 blocks of 20 ms. A digit is reported once, when its tone pair
has held for two consecutive blocks (40 ms, the ITU minimum tone length), dominates the rest of
the signal, and the two tones are within the allowed twist.
"""

from __future__ import annotations

import numpy as np

LOW = (697, 770, 852, 941)
HIGH = (1209, 1336, 1477, 1633)
KEYS = ("123A", "456B", "789C", "*0#D")
_MIN_LEVEL = 1e-4  # tone power relative to full scale (about -40 dBFS)
_MAX_TWIST_DB = 8.0
_DOMINANCE = 0.6  # the two tones carry at least this share of the block's power


_BASES: dict[tuple[int, int, tuple[int, ...]], np.ndarray] = {}


def goertzel_power(block: np.ndarray, rate: int, freqs: tuple[int, ...]) -> np.ndarray:
    """Mean power of each frequency in the block (Goertzel's single-bin DFT, as one product)."""
    n = len(block)
    key = (n, rate, freqs)
    if key not in _BASES:  # one complex basis per block size, rate and frequency set
        t = np.arange(n) / rate
        _BASES[key] = np.exp(-2j * np.pi * np.outer(freqs, t))
    x = block.astype(np.float64) / 32768.0
    return np.abs(_BASES[key] @ x) ** 2 / (n * n / 4)


def detect_key(block: np.ndarray, rate: int) -> str | None:
    """The key whose tone pair fills this block, if any."""
    total = float(np.mean((block.astype(np.float64) / 32768.0) ** 2))
    if total < _MIN_LEVEL / 2:
        return None
    low, high = goertzel_power(block, rate, LOW), goertzel_power(block, rate, HIGH)
    li, hi = int(np.argmax(low)), int(np.argmax(high))
    pair = (low[li] + high[hi]) / 2  # mean power of each sinusoid: A^2/2 per tone
    if low[li] < _MIN_LEVEL or high[hi] < _MIN_LEVEL:
        return None
    twist = abs(10 * np.log10(low[li] / high[hi]))
    if twist > _MAX_TWIST_DB or pair < _DOMINANCE * total:
        return None
    return KEYS[li][hi]


class DtmfDetector:
    """Feeds blocks in order; returns a key once per press."""

    def __init__(self, rate: int) -> None:
        if rate not in (8000, 16000):
            raise ValueError("in-band DTMF detection runs at 8 or 16 kHz")
        self.rate = rate
        self._candidate: str | None = None
        self._held = 0
        self._reported = False

    def push(self, block: np.ndarray) -> str | None:
        key = detect_key(block, self.rate)
        if key is None or key != self._candidate:
            self._candidate, self._held, self._reported = key, 1 if key else 0, False
            return None
        self._held += 1
        if self._held >= 2 and not self._reported:
            self._reported = True
            return key
        return None
