"""Our faster-whisper as a LiveKit Agents STT plugin.

The plugin recognizes one buffered turn at a time (``recognize``), through the same
``WhisperTranscriber`` the SIP path uses, so the encoder window is sized to the turn
(``voice.asr.window_frames``) rather than padded to Whisper's 30 s. It does not stream: LiveKit's
own ``stt.StreamAdapter`` with a VAD cuts a room's audio into turns and calls ``recognize`` on
each (``streaming_whisper`` builds it), so Whisper only ever sees voiced audio.

Any input rate works (8 kHz from a SIP trunk, 48 kHz from a WebRTC room): frames are downmixed
and resampled to Whisper's 16 kHz here.
"""

from __future__ import annotations

import math

import numpy as np
from livekit import rtc
from livekit.agents import stt, utils
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.vad import VAD

from voice.audio import ASR_SAMPLE_RATE, resample, rms_dbfs
from voice.engines import VoiceEngines

QUIET_DBFS = -55.0  # a buffer quieter than this throughout is silence: Whisper never sees it


def frames_to_speech(buffer: utils.AudioBuffer) -> np.ndarray:
    """LiveKit audio (one frame or a list, any rate and channel count) as mono int16 at 16 kHz."""
    frame = rtc.combine_audio_frames(buffer) if isinstance(buffer, list) else buffer
    samples = np.frombuffer(frame.data, dtype=np.int16)
    if frame.num_channels > 1:
        samples = samples.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
    if frame.sample_rate != ASR_SAMPLE_RATE:
        samples = resample(samples, frame.sample_rate, ASR_SAMPLE_RATE)
    return np.ascontiguousarray(samples, dtype=np.int16)


class WhisperSTT(stt.STT):
    """faster-whisper on the process's shared ``VoiceEngines`` (models loaded once)."""

    def __init__(self, engines: VoiceEngines) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False,
                                                          interim_results=False))
        self._engines = engines

    @property
    def model(self) -> str:
        return self._engines.settings.models.asr_model

    @property
    def provider(self) -> str:
        return "faster-whisper"

    async def _recognize_impl(self, buffer: utils.AudioBuffer, *,
                              language: NotGivenOr[str] = NOT_GIVEN,
                              conn_options: APIConnectOptions) -> stt.SpeechEvent:
        speech = frames_to_speech(buffer)
        request_id = utils.shortuuid()
        if len(speech) == 0 or rms_dbfs(speech) < QUIET_DBFS:
            # Whisper invents text on silence; an empty final transcript is the honest answer.
            return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                                   request_id=request_id, alternatives=[
                                       stt.SpeechData(language=self._language(language),
                                                      text="")])
        transcript = await self._engines.transcribe(speech)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=request_id,
            alternatives=[stt.SpeechData(
                language=transcript.language, text=transcript.text, start_time=0.0,
                end_time=transcript.audio_s,
                # Whisper's mean token log-probability, mapped to [0, 1]
                confidence=float(min(1.0, math.exp(transcript.avg_logprob))))],
            recognition_usage=stt.RecognitionUsage(audio_duration=transcript.audio_s))

    def _language(self, language: NotGivenOr[str]) -> str:
        if utils.is_given(language):
            return language
        return self._engines.settings.asr.language or "en"


def streaming_whisper(engines: VoiceEngines, vad: VAD) -> stt.StreamAdapter:
    """Whisper behind a VAD as a streaming STT: LiveKit's ``StreamAdapter`` (the library's
    mechanism for a batch STT) cuts turns with ``vad`` and recognizes each one whole.
    ``AgentSession(stt=WhisperSTT(...), vad=...)`` builds the same adapter itself."""
    return stt.StreamAdapter(stt=WhisperSTT(engines), vad=vad)
