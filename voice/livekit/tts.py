"""Piper as a LiveKit Agents TTS plugin, sentence by sentence.

``synthesize`` pushes each sentence's audio as soon as Piper has it (Piper's own sentence split,
one ``AudioChunk`` a sentence), so the first sentence plays while the next is computed. In an
``AgentSession`` LiveKit wraps this non-streaming TTS in its ``tts.StreamAdapter``, which splits
the reply text stream into sentences and calls ``synthesize`` per sentence: the same
by-sentence speaking the SIP path does. Piper runs in the engines' TTS thread pool, never on the
event loop. With the host's inference tier (``models.inference_url``: engines without a local
voice) each ``synthesize`` is one request for the whole text, which in a session is one sentence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
from livekit.agents import tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from voice.audio import resample
from voice.engines import VoiceEngines, trim_leading_quiet

TIER_RATE = 22050  # asked of the inference tier when no rate is given: joe-medium's own


class PiperTTS(tts.TTS):
    """Piper on the process's shared ``VoiceEngines``; audio at ``sample_rate`` (default: the
    voice's own, 22.05 kHz for joe-medium; LiveKit resamples for the room)."""

    def __init__(self, engines: VoiceEngines, *, sample_rate: int | None = None) -> None:
        self._engines = engines
        self.voice = getattr(engines, "voice", None)  # None: the inference tier synthesizes
        self._voice_rate = int(self.voice.config.sample_rate) if self.voice else TIER_RATE
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False),
                         sample_rate=sample_rate or self._voice_rate, num_channels=1)

    @property
    def model(self) -> str:
        return self._engines.settings.models.tts_voice

    @property
    def provider(self) -> str:
        return "piper"

    def synthesize(self, text: str, *,
                   conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
                   ) -> tts.ChunkedStream:
        return _PiperStream(tts=self, input_text=text, conn_options=conn_options)

    def sentences(self, text: str) -> Iterator[np.ndarray]:
        """Piper's audio for ``text``, one int16 array a sentence, at ``self.sample_rate``
        (blocking: run it in a thread)."""
        first = True
        for chunk in self.voice.synthesize(text, self._engines.syn_config):
            audio = chunk.audio_int16_array
            if first:  # the quiet Piper puts before the reply only delays it
                audio, first = trim_leading_quiet(audio, self._voice_rate), False
            if self.sample_rate != self._voice_rate:
                audio = resample(audio, self._voice_rate, self.sample_rate)
            yield np.ascontiguousarray(audio, dtype=np.int16)


_DONE = object()


class _PiperStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        engine: PiperTTS = self._tts  # type: ignore[assignment]
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=engine.sample_rate,
                                  num_channels=1, mime_type="audio/pcm")
        if engine.voice is None:
            output_emitter.push(await engine._engines.synthesize(self.input_text,
                                                                 engine.sample_rate))
            output_emitter.flush()
            return
        loop = asyncio.get_running_loop()
        pool = engine._engines.tts_pool
        sentences = engine.sentences(self.input_text)
        while True:
            audio = await loop.run_in_executor(pool, next, sentences, _DONE)
            if audio is _DONE:
                break
            output_emitter.push(audio.tobytes())
        output_emitter.flush()
