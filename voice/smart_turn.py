"""Smart Turn v3.2: an acoustic end-of-turn probability for the turn's audio at the early pause.

The model is the CPU ONNX file inside the pipecat-ai wheel (never downloaded), or one at a
configured path. It is loaded once per process and run in a one-thread pool of its own, off the
event loop; ONNX Runtime releases the GIL while it computes.

Why not pipecat's ``LocalSmartTurnAnalyzerV3`` as a turn analyzer: it decides on its own VAD
state and ``stop_secs``; here the model is one vote beside the transcript and the expected value,
taken at our early pause. Its prediction step (resampling, the last 8 s, Whisper features,
inference) is reused as it is, so our figures are for the same computation stock pipecat does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from voice.audio import ASR_SAMPLE_RATE


class SmartTurn:
    """One Smart Turn model and the thread it runs in."""

    def __init__(self, model_path: str | None = None) -> None:
        self.model_path = model_path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="smart-turn")
        self._analyzer = None
        self._loaded: Future = self._pool.submit(self._load)  # warm up without blocking

    def _load(self) -> None:
        from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

        analyzer = LocalSmartTurnAnalyzerV3(smart_turn_model_path=self.model_path, cpu_count=1)
        analyzer.set_sample_rate(ASR_SAMPLE_RATE)
        self._analyzer = analyzer

    def probability(self, audio16: np.ndarray) -> float:
        """P(the turn is complete) for int16 audio at 16 kHz ending at the pause (blocking)."""
        self._loaded.result()
        audio = audio16.astype(np.float32) / 32768.0
        return float(self._analyzer._predict_endpoint(audio)["probability"])

    async def predict(self, audio16: np.ndarray) -> tuple[float, float]:
        """(probability, milliseconds it took, queue wait included), off the event loop."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        p = await loop.run_in_executor(self._pool, self.probability, audio16)
        return p, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_models: dict[str | None, SmartTurn] = {}
_lock = threading.Lock()


def shared_smart_turn(model_path: str | None = None) -> SmartTurn:
    """The process-wide model for ``model_path`` (None: the one in the pipecat-ai wheel)."""
    with _lock:
        if model_path not in _models:
            _models[model_path] = SmartTurn(model_path)
        return _models[model_path]
