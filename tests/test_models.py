"""The model registry: everything offline from the PyPI packages, loaded once, replaceable by path."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest

from models.config import ModelSettings
from models.device import choose_device
from models.llm_server import EmbeddedLlmServer
from models.registry import ModelNotFound, ModelRegistry, shared_registry
from voice.audio import read_audio, resample, telephone_channel

from conftest import FIXTURES
from test_speech_path import word_error_rate

JFK = ("And so my fellow Americans, ask not what your country can do for you, "
       "ask what you can do for your country.")


def test_cpu_host_gets_int8_and_cuda_cannot_be_forced_without_a_gpu():
    choice = choose_device("auto")
    if choice.device == "cpu":
        assert choice.compute_type == "int8"
        with pytest.raises(RuntimeError, match="no CUDA device"):
            choose_device("cuda")
    assert choose_device("cpu", "float32").compute_type == "float32"
    with pytest.raises(ValueError):
        choose_device("tpu")


def test_one_instance_per_process():
    registry = shared_registry()
    assert shared_registry() is registry
    assert registry.whisper() is registry.whisper()
    assert registry.piper_voice() is registry.piper_voice()


@pytest.mark.slow
def test_whisper_base_is_assembled_from_two_packages_and_transcribes(tmp_path):
    registry = ModelRegistry(ModelSettings(cache_dir=str(tmp_path)))
    path = registry.whisper_path("base")
    assert (path / "model.bin").stat().st_size > 140_000_000
    model = registry.whisper("base")
    audio = resample(telephone_channel(read_audio(FIXTURES / "speech" / "jfk.flac")).samples,
                     8000, 16000).astype(np.float32) / 32768
    segments, info = model.transcribe(audio, beam_size=1)
    assert info.language == "en"
    assert word_error_rate(JFK, " ".join(s.text for s in segments)) <= 0.15


def test_a_user_path_replaces_the_default_and_a_wrong_one_says_so(tmp_path):
    registry = ModelRegistry(ModelSettings(asr_model=str(shared_registry().whisper_path())))
    assert registry.whisper_path() == shared_registry().whisper_path()
    with pytest.raises(ModelNotFound, match="not a bundled model"):
        ModelRegistry(ModelSettings(asr_model=str(tmp_path / "nope"))).whisper_path()
    with pytest.raises(ModelNotFound, match="Piper voice"):
        ModelRegistry(ModelSettings(tts_voice=str(tmp_path / "voice.onnx"))).piper_voice_path()


def test_embeddings_put_paraphrases_closer_than_unrelated_requests():
    model = shared_registry().embedder()
    v = model.encode(["I want to know where my parcel is", "track my order",
                      "what time do you open on sunday"], normalize_embeddings=True)
    assert v.shape == (3, 384)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_the_embedded_llm_server_answers_and_stops():
    from openai import OpenAI

    server = EmbeddedLlmServer(shared_registry().llm_gguf_path())
    with server:
        assert server.base_url is not None
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
            assert response.status == 200
        reply = OpenAI(base_url=server.base_url, api_key="none").chat.completions.create(
            model="local", max_tokens=16, temperature=0,
            messages=[{"role": "user", "content": "Say hello."}])
        assert reply.choices[0].message.content.strip()
        port = server.port
    assert not _port_open(port)


@pytest.mark.slow
def test_models_check_runs_one_inference_per_model():
    results = shared_registry().check()
    names = " ".join(r.name for r in results)
    for model in ("piper", "whisper tiny.en", "whisper base", "silero", "webrtcvad",
                  "embeddings", "llm"):
        assert model in names
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]
    asr = next(r for r in results if r.name == "whisper tiny.en")
    assert "help" in asr.detail.lower()  # it heard what Piper said
