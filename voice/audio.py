"""Audio formats at the edges: PCM chunks, WAV files, G.711 mu-law, resampling."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

ASR_SAMPLE_RATE = 16000
"""Whisper and Silero are trained at 16 kHz; every model boundary asserts it."""


@dataclass(frozen=True)
class AudioChunk:
    """Mono 16-bit PCM with its rate; what crosses package boundaries instead of bare bytes."""

    samples: np.ndarray  # int16, one dimension
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise ValueError("AudioChunk holds one-dimensional int16 samples")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def read_audio(path: Path | str) -> AudioChunk:
    """Read a recording as mono int16 at its own rate.

    WAV files are read directly; anything else (FLAC, MP3, ...) is decoded by PyAV through
    faster-whisper, at 16 kHz.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        from faster_whisper.audio import decode_audio  # PyAV, only for non-WAV input

        floats = decode_audio(str(path), sampling_rate=ASR_SAMPLE_RATE)
        return AudioChunk(float_to_int16(floats), ASR_SAMPLE_RATE)
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2")
    elif width == 1:  # unsigned 8-bit
        data = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8)
    elif width == 4:
        data = (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    else:
        raise ValueError(f"{path}: unsupported WAV sample width {width * 8} bits")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return AudioChunk(np.ascontiguousarray(data, dtype=np.int16), rate)


def write_wav(path: Path | str, samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 samples; a two-dimensional array (n, channels) writes several channels."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / 32768.0


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole int16 signal (files, not streams)."""
    if from_rate == to_rate:
        return samples
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.int16)


class StreamResampler:
    """Frame-by-frame resampling that keeps filter state across frames (no clicks at edges).

    soxr's low-delay quality keeps the added latency to a few milliseconds; an identity rate pair
    passes frames through without a copy.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate, self.to_rate = from_rate, to_rate
        self._stream = (None if from_rate == to_rate else
                        soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality="LQ"))

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


# G.711 mu-law, as telephone trunks carry it (ITU-T G.711, the table form of the standard).
_MU_BIAS = 0x84


def _build_mulaw_decode_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.int16)
    for byte in range(256):
        u = ~byte & 0xFF
        sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
        magnitude = ((mantissa << 3) + _MU_BIAS) << exponent
        value = magnitude - _MU_BIAS
        table[byte] = -value if sign else value
    return table


_MULAW_DECODE = _build_mulaw_decode_table()


def mulaw_encode(samples: np.ndarray) -> bytes:
    """Encode int16 PCM as G.711 mu-law bytes (the reference g711.c algorithm, 14-bit domain)."""
    x = samples.astype(np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    x = np.minimum(np.abs(x), 8159) + 33
    segment = np.searchsorted(_MU_SEGMENT_ENDS, x)  # first end >= x
    uval = np.where(segment >= 8, 0x7F, (segment << 4) | ((x >> (segment + 1)) & 0x0F))
    return (uval ^ mask).astype(np.uint8).tobytes()


_MU_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def mulaw_decode(data: bytes) -> np.ndarray:
    """Decode G.711 mu-law bytes to int16 PCM."""
    return _MULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def telephone_channel(chunk: AudioChunk) -> AudioChunk:
    """What a caller's audio becomes on a G.711 trunk: 8 kHz, mu-law coded and decoded."""
    narrow = resample(chunk.samples, chunk.sample_rate, 8000)
    return AudioChunk(mulaw_decode(mulaw_encode(narrow)), 8000)


def rms_dbfs(samples: np.ndarray) -> float:
    """Level of a frame in dB relative to full scale (silence is about -90)."""
    if len(samples) == 0:
        return -120.0
    power = float(np.mean(samples.astype(np.float64) ** 2))
    return 10.0 * np.log10(max(power, 1e-12) / (32768.0**2))
