"""`ivr models check`: load every model and run one real inference with each.

Loading alone proves little (a truncated model.bin can load; a voice can emit noise), so each
check also judges its output: Whisper must hear the words Piper said, Silero must call that
speech speech, the embedder must put a paraphrase nearer than an unrelated request, and the LLM
must answer with some text. Every model is reported even when an earlier one fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models import catalog

if TYPE_CHECKING:
    from models.registry import ModelRegistry

ASR_RATE = 16000
CHECK_SENTENCE = "Thank you for calling. How can I help you today?"
MIN_WORD_RECALL = 0.5  # Whisper tiny on Piper's voice gets all of it; half means it heard speech
SILERO_SECONDS = 0.5
SILERO_MIN_SPEECH_PROB = 0.5
WEBRTC_FRAME_MS = 20
WEBRTC_AGGRESSIVENESS = 2
EMBEDDING_PROBE = ("where is my parcel", "track my order", "what time do you open on sunday")
LLM_PROMPT = "Greet a caller in one short sentence."
LLM_MAX_TOKENS = 24


@dataclass(frozen=True)
class CheckResult:
    name: str
    device: str
    load_ms: float
    infer_ms: float
    ok: bool
    detail: str


class CheckFailed(Exception):
    """The model ran but its output was wrong; the message says how."""


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing what was said and heard."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_recall(expected: str, heard: str) -> float:
    wanted, got = words(expected), set(words(heard))
    return sum(w in got for w in wanted) / max(1, len(wanted))


def _timed(name: str, device: str, load: Callable[[], Any],
           infer: Callable[[Any], str]) -> CheckResult:
    started = time.perf_counter()
    try:
        model = load()
    except Exception as error:  # noqa: BLE001 - a failure here must not end the call or the process
        return CheckResult(name, device, _ms(started), 0.0, False,
                           f"load failed: {type(error).__name__}: {error}")
    loaded = time.perf_counter()
    try:
        detail = infer(model)
    except CheckFailed as error:
        return CheckResult(name, device, _ms(started, loaded), _ms(loaded), False, str(error))
    except Exception as error:  # noqa: BLE001 - report every model, even after one fails
        return CheckResult(name, device, _ms(started, loaded), _ms(loaded), False,
                           f"inference failed: {type(error).__name__}: {error}")
    return CheckResult(name, device, _ms(started, loaded), _ms(loaded), True, detail)


def _ms(start: float, end: float | None = None) -> float:
    return ((end if end is not None else time.perf_counter()) - start) * 1000


def run_checks(registry: ModelRegistry) -> list[CheckResult]:
    """One result per model, in the order a call uses them."""
    settings = registry.settings
    speech: dict[str, np.ndarray] = {}  # Piper's sentence at 16 kHz, for the listeners
    results = [_timed(f"piper {settings.tts_voice}", registry.piper_device,
                      registry.piper_voice, lambda voice: _piper(voice, speech))]

    asr_names = list(dict.fromkeys([settings.asr_model, *catalog.WHISPER_BUNDLED,
                                    *catalog.WHISPER_SPLIT]))
    for name in asr_names:
        results.append(_timed(f"whisper {name}", registry.whisper_device,
                              lambda name=name: registry.whisper(name),
                              lambda model: _whisper(model, speech)))
    results.append(_timed("silero-vad", "cpu", registry.silero_vad,
                          lambda model: _silero(model, speech)))
    results.append(_timed("webrtcvad", "cpu", _webrtcvad, lambda vad: _webrtc(vad, speech)))
    results.append(_timed(f"embeddings {settings.embedding_model}", registry.embedder_device,
                          registry.embedder, _embeddings))
    gguf = Path(settings.llm_model_path or catalog.LLM_GGUF.relpath).name
    results.append(_llm(f"llm {settings.llm_url or gguf}", registry))
    return results


def _needs_speech(speech: dict[str, np.ndarray]) -> np.ndarray:
    if "16k" not in speech:
        raise CheckFailed("skipped: needs the sentence Piper failed to synthesize")
    return speech["16k"]


def _piper(voice: Any, speech: dict[str, np.ndarray]) -> str:
    import soxr

    chunks = [chunk.audio_int16_array for chunk in voice.synthesize(CHECK_SENTENCE)]
    if not chunks:
        raise CheckFailed("Piper produced no audio")
    audio = np.concatenate(chunks)
    rate = voice.config.sample_rate
    if np.abs(audio).max() < 1000:
        raise CheckFailed(f"Piper produced near silence (peak {np.abs(audio).max()})")
    speech["16k"] = soxr.resample(audio, rate, ASR_RATE)
    return f"{len(audio) / rate:.2f} s of audio at {rate} Hz"


def _whisper(model: Any, speech: dict[str, np.ndarray]) -> str:
    audio = _needs_speech(speech).astype(np.float32) / 32768
    language = None if model.model.is_multilingual else "en"
    segments, info = model.transcribe(audio, language=language, beam_size=1)
    text = " ".join(segment.text.strip() for segment in segments)
    recall = word_recall(CHECK_SENTENCE, text)
    detail = f"heard {text!r} (language {info.language}, word recall {recall:.0%})"
    if recall < MIN_WORD_RECALL:
        raise CheckFailed(detail)
    return detail


def _silero(model: Any, speech: dict[str, np.ndarray]) -> str:
    import torch

    audio = _needs_speech(speech)
    middle, half = len(audio) // 2, int(SILERO_SECONDS * ASR_RATE) // 2
    clip = torch.from_numpy(audio[middle - half:middle + half].astype(np.float32) / 32768)
    try:
        probs = model.audio_forward(clip, ASR_RATE)
    finally:
        model.reset_states()  # the shared wrapper must not carry this clip into a caller's
    best = float(probs.max())
    detail = f"max speech probability {best:.2f} on {SILERO_SECONDS} s of speech"
    if best < SILERO_MIN_SPEECH_PROB:
        raise CheckFailed(detail)
    return detail


def _webrtcvad() -> Any:
    import webrtcvad

    return webrtcvad.Vad(WEBRTC_AGGRESSIVENESS)


def _webrtc(vad: Any, speech: dict[str, np.ndarray]) -> str:
    audio = _needs_speech(speech).astype(np.int16)
    size = ASR_RATE * WEBRTC_FRAME_MS // 1000
    frames = audio[: len(audio) // size * size].reshape(-1, size)
    loudest = frames[np.argmax(np.abs(frames.astype(np.int32)).sum(axis=1))]
    if not vad.is_speech(loudest.tobytes(), ASR_RATE):
        raise CheckFailed(f"the loudest {WEBRTC_FRAME_MS} ms frame of speech was not voiced")
    return f"the loudest {WEBRTC_FRAME_MS} ms frame of speech is voiced"


def _embeddings(model: Any) -> str:
    vectors = model.encode(list(EMBEDDING_PROBE), normalize_embeddings=True)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    detail = f"dim {vectors.shape[1]}, paraphrase {similar:.2f} vs unrelated {unrelated:.2f}"
    if similar <= unrelated:
        raise CheckFailed(detail)
    return detail


def _llm(name: str, registry: ModelRegistry) -> CheckResult:
    """Load = start the embedded server (nothing when models.llm_url is set); infer = one reply."""
    from models.llm_server import EmbeddedLlmServer

    url = registry.settings.llm_url
    server: EmbeddedLlmServer | None = None

    def start() -> str:
        nonlocal server
        if url:
            return url
        server = EmbeddedLlmServer(registry.llm_gguf_path(), port=registry.settings.llm_port,
                                   kind=registry.settings.llm_server)
        return server.start()

    try:
        return _timed(name, "cpu" if not url else "remote", start, _chat)
    finally:
        if server is not None:
            server.stop()


def _chat(base_url: str) -> str:
    from models.llm_client import sync_chat_client

    client = sync_chat_client(base_url)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=model, max_tokens=LLM_MAX_TOKENS, temperature=0,
        messages=[{"role": "user", "content": LLM_PROMPT}])
    text = (reply.choices[0].message.content or "").strip()
    if not text:
        raise CheckFailed("the LLM answered with no text")
    return f"answered {text[:60]!r}"
