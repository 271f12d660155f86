"""Model selection settings (a section of the IVR's settings object)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelSettings(BaseModel):
    """Which models to load and where."""

    model_config = ConfigDict(extra="forbid")

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when a GPU is present.")
    asr_model: str = Field("tiny.en", description="'tiny.en' or 'base' (bundled) or a faster-whisper model directory.")
    asr_compute_type: str | None = Field(None, description="None: float16 on CUDA, int8 on CPU.")
    asr_cpu_threads: int = Field(0, description="0: number of cores.")
    tts_voice: str = Field("en_US-joe-medium", description="Bundled voice name or a Piper .onnx path.")
    llm_url: str | None = Field(None, description="OpenAI-compatible base URL; None starts the embedded SmolLM2 server.")
    llm_model_path: str | None = Field(None, description="GGUF for the embedded server; None: bundled SmolLM2.")
    llm_port: int = Field(0, description="0: a free loopback port.")
    embedding_model: str = Field("all-MiniLM-L6-v2", description="Bundled name or a sentence-transformers directory.")
    cache_dir: str | None = Field(None, description="Where assembled models are kept; None: ~/.cache/voice-ivr.")
