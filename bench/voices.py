"""Synthetic callers in Piper voices unlike the IVR's, for the spoken benchmarks and cohorts.

The IVR speaks with Piper's en_US-joe, the only Piper voice on PyPI, so other voices are made
from it: synthesized slower by a factor r, then played r times faster, which raises (r > 1) or
lowers pitch and formants together, as a shorter or longer vocal tract would, at about the
normal tempo; each variant also has its own noise settings. The IVR itself speaks with
(1.0, 0.667, 0.8). They are still one speaker's prosody: a check of how the pipeline does with
natural-sounding speech, beside espeak-ng's formant voices, not a substitute for real callers.
"""

from __future__ import annotations

import numpy as np

from voice.audio import AudioChunk, resample

#: (r, noise_scale, noise_w_scale) of each re-timbred voice.
PIPER_VARIANTS = [(1.12, 0.8, 0.9), (0.89, 0.8, 0.9), (1.22, 0.9, 1.0), (0.84, 0.5, 0.6)]


def piper_variant_name(index: int) -> str:
    r, noise, noise_w = PIPER_VARIANTS[index % len(PIPER_VARIANTS)]
    return f"piper en_US-joe r={r} noise {noise}/{noise_w}"


def piper_caller(text: str, index: int) -> AudioChunk:
    """``text`` spoken by the ``index``-th re-timbred voice (rotating)."""
    from piper import SynthesisConfig

    from models.registry import shared_registry

    voice = shared_registry().piper_voice()
    rate = voice.config.sample_rate
    r, noise, noise_w = PIPER_VARIANTS[index % len(PIPER_VARIANTS)]
    config = SynthesisConfig(length_scale=r, noise_scale=noise, noise_w_scale=noise_w)
    audio = np.concatenate([c.audio_int16_array for c in voice.synthesize(text, config)])
    return AudioChunk(resample(audio, rate, round(rate / r)), rate)  # played r times faster
