"""Speech detection per 20 ms frame: webrtcvad as a cheap gate, Silero to confirm.

Silero's ONNX session is shared by all calls (one load per process); its recurrent state and
context live here, per call, which the silero-vad package's own wrapper cannot do (it keeps the
state inside the shared object).
"""

from __future__ import annotations

import numpy as np
import webrtcvad

from voice.app.settings import VadSettings
from voice.audio import ASR_SAMPLE_RATE

SILERO_CHUNK = 512  # samples at 16 kHz (32 ms): the only window size Silero v5+ accepts
_SILERO_CONTEXT = 64


class SileroStream:
    """Per-call state for a shared Silero ONNX session."""

    def __init__(self, session) -> None:  # onnxruntime.InferenceSession
        self.session = session
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, _SILERO_CONTEXT), dtype=np.float32)
        self._sr = np.array(ASR_SAMPLE_RATE, dtype=np.int64)

    def probability(self, chunk: np.ndarray) -> float:
        """Speech probability of 512 float samples at 16 kHz."""
        if chunk.shape != (SILERO_CHUNK,):
            raise ValueError(f"Silero takes {SILERO_CHUNK} samples at 16 kHz")
        x = np.concatenate([self._context, chunk[None, :].astype(np.float32)], axis=1)
        feeds = {"input": x, "state": self._state, "sr": self._sr}
        out, self._state = self.session.run(None, feeds)
        self._context = x[:, -_SILERO_CONTEXT:]
        return float(out[0][0])


class SpeechDetector:
    """Decides speech / not speech for each 16 kHz int16 frame of a call."""

    def __init__(self, settings: VadSettings, silero_session=None) -> None:
        if settings.use_silero and silero_session is None:
            raise ValueError("vad.use_silero needs a Silero session (models registry)")
        if not (settings.use_silero or settings.use_webrtcvad):
            raise ValueError("at least one of vad.use_webrtcvad and vad.use_silero must be on")
        self.settings = settings
        self._webrtc = webrtcvad.Vad(settings.webrtcvad_mode) if settings.use_webrtcvad else None
        self._silero = SileroStream(silero_session) if settings.use_silero else None
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet seen by Silero
        self._last_prob = 0.0

    def is_speech(self, frame: np.ndarray, sample_rate: int) -> bool:
        """One frame of 10, 20 or 30 ms at 16 kHz."""
        if sample_rate != ASR_SAMPLE_RATE:
            raise ValueError(f"VAD input must be {ASR_SAMPLE_RATE} Hz, got {sample_rate}")
        gate = True
        if self._webrtc is not None:
            gate = self._webrtc.is_speech(frame.tobytes(), sample_rate)
        if self._silero is None:
            return gate
        samples = frame.astype(np.float32) / 32768.0
        if not gate:
            # The gate spares Silero the silent majority of a call. Its recurrent state carries
            # over the gap; the window restarts on the next voiced frame.
            self._pending = samples[:0]
            self._last_prob = 0.0
            return False
        self._pending = np.concatenate([self._pending, samples])
        while len(self._pending) >= SILERO_CHUNK:
            self._last_prob = self._silero.probability(self._pending[:SILERO_CHUNK])
            self._pending = self._pending[SILERO_CHUNK:]
        return self._last_prob >= self.settings.silero_threshold
