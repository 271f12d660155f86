"""A worker's side of the inference tier: ``RemoteEngines`` does what ``VoiceEngines`` does
(transcribe, synthesize) by asking `ivr inference`, and ``RemoteEmbedder`` stands in for the
sentence-transformers model of the intent classifier. The worker then loads only the VAD (Silero
runs on every 32 ms of every call, with state per call: a round trip per frame would cost more
than the small ONNX session it saves).

The gRPC channel is synchronous and used from a thread pool: it belongs to no event loop, so one
instance serves every call of the process whatever loop runs it, and the loop only awaits, as
it does for in-process models. A request fails fast while the tier is unreachable
(``InferenceUnavailable``); waiting for it to come back is the call's decision
(``voice.inference.outage``), not hidden in a retry here.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from loguru import logger

from voice.app.settings import IvrSettings
from voice.asr import Transcript
from voice.audio import ASR_SAMPLE_RATE
from voice.inference.wire import SERVICE, TRANSPORT_RATES, Message, WireError, message_limit, parse

# Reconnect soon after the tier comes back: gRPC's default backoff grows to two minutes.
_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000)]
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED)


class InferenceError(Exception):
    """Base of the tier's errors; ``code`` is machine-readable."""

    code = "inference"


class InferenceUnavailable(InferenceError):
    """The tier cannot be reached (not started, restarting, killed): worth waiting for."""

    code = "inference-unavailable"


class InferenceRefused(InferenceError):
    """The tier answered and refused the request (bad input, unknown model): not retryable."""

    code = "inference-refused"

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class InferenceClient:
    """One channel to the tier and the four calls it serves; every method blocks (call it from a
    thread) and raises ``InferenceUnavailable`` or ``InferenceRefused``."""

    def __init__(self, target: str, settings: IvrSettings) -> None:
        self.target = target
        limit = message_limit(settings.inference.max_audio_s)
        self.channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS + [
            ("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)])
        self.timeout_s = settings.inference.outage_s
        # Embedding a menu's examples at start-up takes seconds on a busy CPU: a longer deadline
        # (a tier that dies mid-request still fails at once, with UNAVAILABLE).
        self.embed_timeout_s = max(settings.inference.outage_s, settings.inference.connect_wait_s)
        self._methods = {name: self.channel.unary_unary(f"/{SERVICE}/{name}")
                         for name in ("Transcribe", "Synthesize", "Embed", "Describe")}

    def call(self, method: str, request: Message | bytes, timeout_s: float | None = None
             ) -> Message:
        try:
            answer = self._methods[method](bytes(request), timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as error:
            code, details = error.code(), error.details()
            if code in _UNREACHABLE:
                raise InferenceUnavailable(f"inference tier at {self.target} unreachable "
                                           f"({code.name}: {details})") from None
            raise InferenceRefused(code.name, details) from None
        try:
            return parse(answer)
        except WireError as error:
            raise InferenceRefused("BAD_ANSWER", str(error)) from None

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the channel is connected (asks it to reconnect now), False at timeout."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=max(0.0, timeout_s))
            return True
        except grpc.FutureTimeoutError:
            return False

    def transcribe(self, audio16: np.ndarray, model: str | None, hint: str | None = None
                   ) -> Transcript:
        pcm = np.ascontiguousarray(audio16, dtype=np.int16).tobytes()
        answer = self.call("Transcribe", Message(
            {"model": model, "rate": ASR_SAMPLE_RATE, "hint": hint}, pcm))
        return Transcript(**answer.header)

    def synthesize(self, text: str, rate: int) -> bytes:
        return self.call("Synthesize", Message({"text": text, "rate": rate})).payload

    def embed(self, texts: list[str], normalize: bool) -> np.ndarray:
        answer = self.call("Embed", Message({"texts": texts, "normalize": normalize}),
                           self.embed_timeout_s)
        return np.frombuffer(answer.payload, dtype=np.float32).reshape(answer.header["shape"])

    def describe(self) -> dict[str, Any]:
        return self.call("Describe", Message()).header

    def close(self) -> None:
        self.channel.close()


class RemoteEngines:
    """``VoiceEngines`` over the tier: same ``transcribe``/``synthesize``/``fallback``, models
    named rather than held. The phrases said while the tier is down (the acknowledgement, the
    outage message) are kept as audio once it has been reachable, since they cannot be
    synthesized then."""

    def __init__(self, settings: IvrSettings) -> None:
        from models.registry import shared_registry

        target = settings.models.inference_url
        if not target:
            raise ValueError("RemoteEngines needs models.inference_url (the tier's address)")
        self.settings = settings
        self.client = InferenceClient(target, settings)
        self.silero_session = shared_registry(settings.models).silero_session() \
            if settings.vad.use_silero else None
        self.pool = ThreadPoolExecutor(settings.inference.client_threads,
                                       thread_name_prefix="inference")
        from voice.pipeline.clauses import spoken_pieces

        # Kept piece by piece, as the speak stage asks for them (an opening clause alone).
        self.kept_phrases = {piece for phrase in (settings.tts.acknowledgement,
                                                  settings.inference.outage_message)
                             for piece in spoken_pieces(phrase)}
        self._kept: dict[tuple[str, int], bytes] = {}
        self._closed = threading.Event()
        threading.Thread(target=self._keep_phrases, name="inference-phrases", daemon=True).start()

    @property
    def target(self) -> str:
        return self.client.target

    def fallback(self, name: str) -> str:
        """The degradation ladder's smaller ASR model: the tier holds it, we name it."""
        return name

    async def _run(self, work, *args):
        if self._closed.is_set():
            raise InferenceUnavailable("inference client closed")
        return await asyncio.get_running_loop().run_in_executor(self.pool, work, *args)

    async def transcribe(self, audio16: np.ndarray, transcriber: str | None = None, *,
                         hint: str | None = None) -> Transcript:
        return await self._run(self.client.transcribe, audio16, transcriber, hint)

    async def synthesize(self, text: str, rate: int) -> bytes:
        """One sentence as int16 PCM at ``rate``; a kept phrase still plays while the tier is
        down."""
        try:
            pcm = await self._run(self.client.synthesize, text, rate)
        except InferenceUnavailable:
            if (text, rate) in self._kept:
                return self._kept[(text, rate)]
            raise
        if text in self.kept_phrases:
            self._kept[(text, rate)] = pcm
        return pcm

    async def wait_ready(self, timeout_s: float) -> bool:
        return await self._run(self.client.wait_ready, timeout_s)

    def kept(self, text: str, rate: int) -> bytes | None:
        """The audio kept for one of the outage phrases, once the tier has been reachable."""
        return self._kept.get((text, rate))

    def _keep_phrases(self) -> None:
        """Fetch the outage phrases as soon as the tier answers (it may start after us)."""
        while not self._closed.is_set():
            if self.client.wait_ready(1.0):
                try:
                    for text in self.kept_phrases:
                        for rate in TRANSPORT_RATES:
                            self._kept[(text, rate)] = self.client.synthesize(text, rate)
                    logger.info(f"inference tier at {self.target}: connected, outage phrases "
                                f"kept")
                    return
                except InferenceError as error:
                    logger.warning(f"inference tier at {self.target}: {error}")
            self._closed.wait(0.5)

    def close(self) -> None:
        self._closed.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


class RemoteEmbedder:
    """The part of ``SentenceTransformer`` the intent classifier and signals use (``encode``),
    answered by the tier's MiniLM: the worker then never imports torch."""

    def __init__(self, client: InferenceClient, *, connect_wait_s: float = 0.0,
                 batch: int = 256) -> None:
        self.client = client
        self.batch = batch
        self._connect_wait_s = connect_wait_s  # spent on the first request only (start-up)

    def encode(self, sentences: list[str] | str, *, normalize_embeddings: bool = False,
               **_options: Any) -> np.ndarray:
        """``SentenceTransformer.encode``'s result for a list (batch size, progress bar and
        numpy conversion are the tier's concern and ignored here)."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if self._connect_wait_s:
            wait, self._connect_wait_s = self._connect_wait_s, 0.0
            if not self.client.wait_ready(wait):
                raise InferenceUnavailable(f"inference tier at {self.client.target} did not "
                                           f"answer within inference.connect_wait_s ({wait:g} s)")
        parts = [self.client.embed(texts[i:i + self.batch], normalize_embeddings)
                 for i in range(0, len(texts), self.batch)]
        vectors = np.concatenate(parts)
        return vectors[0] if single else vectors


_remote: dict[str, RemoteEngines] = {}
_remote_lock = threading.Lock()


def shared_remote_engines(settings: IvrSettings) -> RemoteEngines:
    """The process-wide client of the tier at ``models.inference_url``."""
    target = settings.models.inference_url or ""
    with _remote_lock:
        if target not in _remote:
            _remote[target] = RemoteEngines(settings)
        return _remote[target]


def embedder_for(settings: IvrSettings) -> Any:
    """The sentence embedder: the tier's when ``models.inference_url`` is set, else this
    process's own MiniLM."""
    if settings.models.inference_url:
        return RemoteEmbedder(shared_remote_engines(settings).client,
                              connect_wait_s=settings.inference.connect_wait_s)
    from models.registry import shared_registry

    return shared_registry(settings.models).embedder()
