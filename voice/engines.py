"""The models of the voice path, loaded once per process and shared by every call.

Inference is CPU-heavy and blocking, so it runs in thread pools sized to the cores (CTranslate2,
ONNX Runtime and Piper release the GIL while they compute); the event loop only awaits.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from piper import SynthesisConfig

from models.registry import shared_registry
from voice.app.settings import IvrSettings
from voice.asr import Transcript, WhisperTranscriber
from voice.audio import ASR_SAMPLE_RATE, resample

if TYPE_CHECKING:
    from voice.inference.client import RemoteEngines

LEAD_QUIET_DBFS = -50.0
LEAD_KEEP_MS = 10


def trim_leading_quiet(audio: np.ndarray, rate: int) -> np.ndarray:
    """Drop the near-silence Piper puts before a sentence (40-60 ms here), keeping 10 ms: the
    caller hears the reply that much sooner, and nothing audible is cut."""
    step = rate // 200  # 5 ms
    threshold = 32768.0 * 10 ** (LEAD_QUIET_DBFS / 20)
    for start in range(0, max(0, len(audio) - step), step):
        if np.sqrt(np.mean(audio[start:start + step].astype(np.float64) ** 2)) > threshold:
            return audio[max(0, start - rate * LEAD_KEEP_MS // 1000):]
    return audio


class VoiceEngines:
    """ASR, TTS and VAD models plus the pools they run in."""

    def __init__(self, settings: IvrSettings) -> None:
        self.settings = settings
        self.registry = shared_registry(settings.models)
        self.transcriber = WhisperTranscriber(self.registry.whisper(), settings.asr)
        self._fallbacks: dict[str, WhisperTranscriber] = {}
        self.voice = self.registry.piper_voice()
        self.silero_session = self.registry.silero_session() if settings.vad.use_silero else None
        self.syn_config = SynthesisConfig(length_scale=settings.tts.length_scale)
        cores = os.cpu_count() or 1
        self.asr_pool = ThreadPoolExecutor(settings.asr.workers, thread_name_prefix="asr")
        self.tts_pool = ThreadPoolExecutor(max(1, min(2, cores)), thread_name_prefix="tts")
        self._lock = threading.Lock()

    def fallback(self, name: str) -> WhisperTranscriber:
        """The smaller ASR model of the degradation ladder, loaded on first use."""
        with self._lock:
            if name not in self._fallbacks:
                self._fallbacks[name] = WhisperTranscriber(self.registry.whisper(name),
                                                           self.settings.asr)
            return self._fallbacks[name]

    async def transcribe(self, audio16: np.ndarray, transcriber: WhisperTranscriber | None = None,
                         *, hint: str | None = None) -> Transcript:
        """``hint``: the words the caller is likely to say (see ``WhisperTranscriber``)."""
        model = transcriber or self.transcriber
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.asr_pool, functools.partial(
            model.transcribe, audio16, ASR_SAMPLE_RATE, hint=hint))

    def _synthesize(self, text: str, rate: int) -> bytes:
        chunks = [c.audio_int16_array for c in self.voice.synthesize(text, self.syn_config)]
        if not chunks:
            return b""
        audio = trim_leading_quiet(np.concatenate(chunks), self.voice.config.sample_rate)
        return resample(audio, self.voice.config.sample_rate, rate).tobytes()

    async def synthesize(self, text: str, rate: int) -> bytes:
        """One sentence as int16 PCM at ``rate``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.tts_pool, self._synthesize, text, rate)

    def close(self) -> None:
        self.asr_pool.shutdown(wait=False, cancel_futures=True)
        self.tts_pool.shutdown(wait=False, cancel_futures=True)


_engines: VoiceEngines | None = None
_engines_lock = threading.Lock()


def shared_engines(settings: IvrSettings) -> VoiceEngines | RemoteEngines:
    """The process-wide engines (the first caller's settings choose the models); with
    ``models.inference_url`` set, the client of the host's inference tier instead."""
    if settings.models.inference_url:
        from voice.inference.client import shared_remote_engines

        return shared_remote_engines(settings)
    global _engines
    with _engines_lock:
        if _engines is None:
            _engines = VoiceEngines(settings)
        return _engines
