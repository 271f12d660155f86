"""One registry that finds, verifies and loads every model offline, once per process.

Models are large (hundreds of MB) and slow to load (seconds), and every call of the IVR uses
the same ones, so each is loaded on first use and then shared. Loading is thread-safe: two calls
asking for the same model at once get one instance, loaded once, while a different model can
load at the same time. Where the files come from is ``models.locate``'s concern; which device
they run on is ``models.device``'s; this module only loads and caches.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from models import locate
from models.catalog import package_dir  # noqa: F401  (kept importable from here)
from models.config import ModelSettings
from models.device import DeviceChoice, choose_device, onnx_uses_cuda, torch_device
from models.errors import ModelNotFound
from models.offline import enforce_offline

if TYPE_CHECKING:
    import onnxruntime
    from faster_whisper import WhisperModel
    from piper import PiperVoice
    from sentence_transformers import SentenceTransformer

__all__ = ["ModelNotFound", "ModelRegistry", "shared_registry"]

T = TypeVar("T")


class ModelRegistry:
    """Loads each model on first use and shares it; every method is thread-safe."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = settings or ModelSettings()
        self.device: DeviceChoice = choose_device(self.settings.device,
                                                  self.settings.asr_compute_type)
        self._cache: dict[Hashable, Any] = {}
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()  # guards the two dicts, never held while loading
        self._assembly_lock = threading.Lock()
        limit_blas_threads(self.settings.blas_threads)

    def _cached(self, key: Hashable, load: Callable[[], T]) -> T:
        """The instance for ``key``, loading it once; other keys load concurrently."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            value = load()  # an exception leaves nothing cached: the next call retries
            with self._lock:
                self._cache[key] = value
            return value

    @property
    def cache_dir(self) -> Path:
        """Where assembled models are kept (settings, then $IVR_CACHE_DIR, then ~/.cache)."""
        return self.settings.cache_root()

    # -- ASR ---------------------------------------------------------------------------------

    def whisper_path(self, name: str | None = None) -> Path:
        """The faster-whisper directory for ``name`` (default: settings.asr_model)."""
        with self._assembly_lock:  # one thread joins Whisper base; the others then reuse it
            return locate.whisper_dir(name or self.settings.asr_model, self.cache_dir)

    @property
    def whisper_device(self) -> str:
        return f"{self.device.device}/{self.device.compute_type}"

    def whisper(self, name: str | None = None) -> WhisperModel:
        """A faster-whisper model on the chosen device, one per (model, device, compute type)."""
        path = self.whisper_path(name)
        threads = self.settings.asr_cpu_threads or os.cpu_count() or 1
        workers = self.settings.asr_workers
        device, compute = self.device.device, self.device.compute_type

        def load() -> WhisperModel:
            from faster_whisper import WhisperModel

            return WhisperModel(str(path), device=device, compute_type=compute,
                                cpu_threads=threads, num_workers=workers)

        return self._cached(("whisper", str(path), device, compute, threads, workers), load)

    # -- TTS ---------------------------------------------------------------------------------

    def piper_voice_path(self, name: str | None = None) -> Path:
        """The Piper .onnx for ``name`` (default: settings.tts_voice)."""
        return locate.piper_voice_file(name or self.settings.tts_voice)

    @property
    def piper_device(self) -> str:
        return "cuda" if onnx_uses_cuda(self.device) else "cpu"

    def piper_voice(self, name: str | None = None) -> PiperVoice:
        """A Piper voice; ``synthesize(text)`` yields ``piper.AudioChunk``s."""
        path = self.piper_voice_path(name)
        use_cuda = onnx_uses_cuda(self.device)

        def load() -> PiperVoice:
            from piper import PiperVoice

            return PiperVoice.load(str(path), use_cuda=use_cuda)

        return self._cached(("piper", str(path), use_cuda), load)

    # -- VAD ---------------------------------------------------------------------------------

    def silero_path(self) -> Path:
        return locate.silero_onnx_file()

    def silero_vad(self) -> Any:
        """silero-vad's own model wrapper (ONNX), as ``load_silero_vad(onnx=True)`` returns it.

        It keeps the stream's state inside, so one shared instance suits one stream at a time
        or whole-clip use (``audio_forward``, which resets it first). For many concurrent calls
        use ``silero_session`` and keep the state per call.
        """

        def load() -> Any:
            locate.silero_onnx_file()  # a clear ModelNotFound before silero's own error
            import torch

            # Importing silero_vad sets torch's global thread count to 1 for the whole process,
            # which would leave the embedding model (torch too) on one core; put it back.
            threads = torch.get_num_threads()
            from silero_vad import load_silero_vad

            torch.set_num_threads(threads)
            with warnings.catch_warnings():  # its own use of a deprecated importlib API
                warnings.simplefilter("ignore", DeprecationWarning)
                return load_silero_vad(onnx=True)

        return self._cached("silero_vad", load)

    def silero_session(self) -> onnxruntime.InferenceSession:
        """Silero's bare ONNX session: stateless, so one serves every call (state per call)."""

        def load() -> onnxruntime.InferenceSession:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # 32 ms windows: threading costs more than it saves
            options.inter_op_num_threads = 1
            return onnxruntime.InferenceSession(str(self.silero_path()), options,
                                                providers=["CPUExecutionProvider"])

        return self._cached("silero_session", load)

    # -- embeddings and LLM --------------------------------------------------------------------

    def embedding_path(self) -> Path:
        return locate.embedding_dir(self.settings.embedding_model)

    @property
    def embedder_device(self) -> str:
        return torch_device(self.device)

    def embedder(self) -> SentenceTransformer:
        """The sentence-transformers model (384-dimensional for the bundled MiniLM)."""
        path = self.embedding_path()
        device = self.embedder_device

        def load() -> SentenceTransformer:
            enforce_offline()
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # a bar per load clutters `ivr` output

            model = SentenceTransformer(str(path), device=device, local_files_only=True)
            limit_blas_threads(self.settings.blas_threads)  # and any BLAS loaded with it
            return model

        return self._cached(("embedder", str(path), device), load)

    def llm_gguf_path(self) -> Path:
        """The GGUF the embedded server loads (settings.llm_model_path or bundled SmolLM2)."""
        return locate.llm_gguf_file(self.settings.llm_model_path)

    # -- check -------------------------------------------------------------------------------


def limit_blas_threads(threads: int) -> None:
    """Cap the BLAS libraries loaded in this process (numpy's OpenBLAS) at ``threads``; 0 leaves
    them alone. threadpoolctl (scikit-learn's own tool for this) because OPENBLAS_NUM_THREADS
    only counts before numpy is imported, which a library cannot promise."""
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")


_shared: ModelRegistry | None = None
_shared_lock = threading.Lock()


def shared_registry(settings: ModelSettings | None = None) -> ModelRegistry:
    """The process-wide registry; the first caller's settings choose the models.

    A later caller passing different settings gets the existing registry anyway: models are
    per process, and two sets of them would double the memory.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ModelRegistry(settings)
        return _shared
