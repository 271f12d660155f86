"""`ivr inference`: one process per host that owns the ASR, TTS and embedding models and serves
every worker on the host over gRPC (a unix socket by default).

Why gRPC: it is an existing RPC with what a worker needs from the tier built in: framing over a
unix socket, per-call deadlines, status codes for a clear refusal, and a channel that reconnects
by itself (with a backoff we set) after the tier restarts; ``grpcio`` was already installed with
the OpenTelemetry exporter. HTTP/2 through an ASGI server would need hypercorn and an HTTP/2
client beside it for the same result. Ray Serve (``@serve.batch``, autoscaling over nodes) was
considered for multi-host pools; it brings a Ray cluster (GCS, raylet, dashboard: several
hundred MB and processes per host) to what is here one model process per host, and its
overhead was not measured in this round.

The models are the in-process ones (``voice.engines.VoiceEngines``); ASR of the default model
goes through ``voice.inference.batching.BatchingTranscriber``, which batches turns of different
calls that arrive together and gives the same words as one at a time, so a transcript from the
tier is the one a worker would have made itself. Every request is parsed before any model is
touched; a bad one gets a gRPC status with a precise message and the service goes on serving.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from loguru import logger

from voice.app.settings import IvrSettings
from voice.asr import Transcript
from voice.audio import ASR_SAMPLE_RATE
from voice.inference.batching import BatchingTranscriber
from voice.inference.wire import (
    SERVICE,
    TRANSPORT_RATES,
    Message,
    WireError,
    field_of,
    message_limit,
    parse,
)

MAX_HINT_CHARS = 2000  # an ASR hint is a few phrases; Whisper uses its last 100 tokens anyway


class RequestRefused(Exception):
    """A request the tier will not serve, with the gRPC status that says why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class InferenceService:
    """The request handlers: parse, check against the limits, run the model, answer."""

    def __init__(self, settings: IvrSettings) -> None:
        from voice.engines import VoiceEngines

        self.settings = settings
        self.engines = VoiceEngines(settings)
        self.asr_models = {settings.models.asr_model: self.engines.transcriber}
        fallback = settings.budget.asr_fallback
        if fallback and fallback not in self.asr_models:
            self.asr_models[fallback] = self.engines.fallback(fallback)  # fail now, not mid-call
        # Turns of different calls that end together share one forward pass of the default
        # model (max_batch 1: one at a time, as in a worker).
        model = self.engines.transcriber.model
        self.max_batch = settings.asr.max_batch or (16 if model.model.device == "cuda" else 1)
        self.batcher = BatchingTranscriber(
            model, settings.asr.model_copy(update={"max_batch": self.max_batch}),
            budget_ms=settings.budget.asr_ms) if self.max_batch > 1 else None
        self.embedder = self.engines.registry.embedder()
        self.embed_pool = ThreadPoolExecutor(1, thread_name_prefix="embed")
        self.served = 0

    # -- handlers (bytes in, bytes out; errors become statuses in ``_handler``) -----------------

    async def transcribe(self, request: Message) -> Message:
        limits = self.settings.inference
        name = field_of(request.header, "model", (str, type(None)), None)
        rate = field_of(request.header, "rate", int)
        hint = field_of(request.header, "hint", (str, type(None)), None)
        if hint is not None and len(hint) > MAX_HINT_CHARS:
            raise WireError(f"ASR hint of {len(hint)} characters exceeds {MAX_HINT_CHARS}")
        if rate != ASR_SAMPLE_RATE:
            raise WireError(f"ASR audio must be {ASR_SAMPLE_RATE} Hz int16, got rate {rate}")
        if len(request.payload) % 2:
            raise WireError(f"ASR audio is int16: {len(request.payload)} bytes is an odd count")
        seconds = len(request.payload) / 2 / ASR_SAMPLE_RATE
        if seconds > limits.max_audio_s:
            raise RequestRefused(grpc.StatusCode.OUT_OF_RANGE,
                                 f"audio of {seconds:.1f} s exceeds inference.max_audio_s "
                                 f"({limits.max_audio_s:g} s)")
        if not request.payload:
            raise WireError("ASR audio is empty")
        transcriber = self._asr_model(name)
        samples = np.frombuffer(request.payload, dtype=np.int16)
        if transcriber is None and self.batcher is not None:
            transcript = await self.batcher.transcribe(samples, hint=hint)
        else:
            transcript = await self.engines.transcribe(samples, transcriber, hint=hint)
        return Message(transcript_header(transcript))

    async def synthesize(self, request: Message) -> Message:
        text = field_of(request.header, "text", str)
        rate = field_of(request.header, "rate", int)
        voice = field_of(request.header, "voice", (str, type(None)), None)
        if rate not in TRANSPORT_RATES:
            raise WireError(f"TTS rate {rate}: use one of {TRANSPORT_RATES}")
        if voice is not None and voice != self.settings.models.tts_voice:
            raise RequestRefused(grpc.StatusCode.NOT_FOUND,
                                 f"voice {voice!r} is not served by this inference tier "
                                 f"(serves {self.settings.models.tts_voice!r})")
        most = self.settings.inference.max_text_chars
        if len(text) > most:
            raise RequestRefused(grpc.StatusCode.OUT_OF_RANGE, f"text of {len(text)} characters "
                                 f"exceeds inference.max_text_chars ({most})")
        pcm = await self.engines.synthesize(text, rate)
        return Message({"rate": rate}, pcm)

    async def embed(self, request: Message) -> Message:
        texts = field_of(request.header, "texts", list)
        normalize = field_of(request.header, "normalize", bool, False)
        if not all(isinstance(t, str) for t in texts):
            raise WireError("header field 'texts' must be a list of strings")
        if len(texts) > self.settings.inference.max_embed_texts:
            raise RequestRefused(grpc.StatusCode.OUT_OF_RANGE,
                                 f"{len(texts)} texts exceed inference.max_embed_texts "
                                 f"({self.settings.inference.max_embed_texts})")
        loop = asyncio.get_running_loop()
        vectors = await loop.run_in_executor(self.embed_pool, self._embed, texts, normalize)
        return Message({"shape": list(vectors.shape)}, vectors.tobytes())

    def _embed(self, texts: list[str], normalize: bool) -> np.ndarray:
        vectors = self.embedder.encode(texts, batch_size=64, normalize_embeddings=normalize,
                                       convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    async def describe(self, request: Message) -> Message:
        models = self.settings.models
        return Message({"asr_models": sorted(self.asr_models), "tts_voice": models.tts_voice,
                        "asr_batch": self.max_batch,
                        "embedding_model": models.embedding_model, "pid": os.getpid(),
                        "device": self.engines.registry.whisper_device, "served": self.served})

    def _asr_model(self, name: str | None):
        if name is None:
            return None
        if name not in self.asr_models:
            raise RequestRefused(grpc.StatusCode.NOT_FOUND,
                                 f"ASR model {name!r} is not served by this inference tier "
                                 f"(serves {sorted(self.asr_models)}; set models.asr_model or "
                                 f"budget.asr_fallback where `ivr inference` runs)")
        return self.asr_models[name]

    # -- gRPC plumbing ----------------------------------------------------------------------------

    def handlers(self) -> grpc.GenericRpcHandler:
        methods = {"Transcribe": self.transcribe, "Synthesize": self.synthesize,
                   "Embed": self.embed, "Describe": self.describe}
        return grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(self._handler(name, method))
            for name, method in methods.items()})

    def _handler(self, name: str, method: Callable[[Message], Awaitable[Message]]):
        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                answer = await method(parse(request))
            except WireError as error:
                logger.warning(f"inference {name}: bad request: {error}")
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            except RequestRefused as error:
                logger.warning(f"inference {name}: refused: {error}")
                await context.abort(error.code, str(error))
            self.served += 1
            return bytes(answer)

        return handle

    async def aclose(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()
        self.engines.close()
        self.embed_pool.shutdown(wait=False, cancel_futures=True)


def transcript_header(transcript: Transcript) -> dict:
    return {"text": transcript.text, "language": transcript.language,
            "no_speech_prob": transcript.no_speech_prob, "avg_logprob": transcript.avg_logprob,
            "audio_s": transcript.audio_s, "elapsed_ms": transcript.elapsed_ms,
            "dropped": transcript.dropped}


def _prepare_bind(bind: str) -> None:
    """A unix socket's folder must exist, and a socket file left by a killed tier is removed
    (gRPC refuses to bind over it); one a live tier answers on is left to it."""
    if not bind.startswith("unix:"):
        return
    path = Path(bind.removeprefix("unix:").removeprefix("//"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_socket():
        return
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:  # nobody listens: a killed tier's leftover
            path.unlink()
            return
    raise SystemExit(f"ivr inference: another inference tier is serving on {bind}")


async def serve(settings: IvrSettings, *, ready: Callable[[str], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Load the models, serve until ``stop`` is set (or SIGTERM/SIGINT), then close."""
    started = time.perf_counter()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    bind = settings.inference.bind
    _prepare_bind(bind)  # before loading: a second tier on the same socket stops at once
    service = await asyncio.to_thread(InferenceService, settings)
    limit = message_limit(settings.inference.max_audio_s)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", limit)])
    server.add_generic_rpc_handlers((service.handlers(),))
    port = server.add_insecure_port(bind)
    if not port:
        raise SystemExit(f"inference.bind {bind!r}: cannot listen there")
    await server.start()
    where = bind if bind.startswith("unix:") else f"{bind.rsplit(':', 1)[0]}:{port}"
    logger.info(f"inference tier serving on {where} (ASR {sorted(service.asr_models)} on "
                f"{service.engines.registry.whisper_device}, models loaded in "
                f"{time.perf_counter() - started:.1f} s)")
    if ready is not None:
        ready(where)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=2.0)
        await service.aclose()
        logger.info("inference tier stopped")
