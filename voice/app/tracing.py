"""Journey traces: OpenTelemetry spans call -> turn -> stage, exported over OTLP.

Off by default, and then nothing here runs: the call core holds no ``CallTrace`` and skips every
hook. It is on when the standard variables ask for it: ``OTEL_TRACES_EXPORTER=otlp`` (or
``console``), or an ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keeps it off. The exporter reads the
rest itself (``OTEL_EXPORTER_OTLP_*``: endpoint, headers, timeout, compression; ``*_PROTOCOL``
``http/protobuf``, the default, or ``grpc`` when ``opentelemetry-exporter-otlp-proto-grpc`` is
installed), as do the batch processor (``OTEL_BSP_*``), the sampler (``OTEL_TRACES_SAMPLER``)
and the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``).

The spans of one call::

    call                      customer.id, journey.id, flow.version, call.outcome,
    ├── turn N                  escalation.reason, escalation.queue, transfer.outcome
    │   ├── listen            journey.stage, intent.name, intent.confidence, turn.latency_ms
    │   ├── asr
    │   ├── nlu
    │   ├── turn_manager
    │   │   └── tool <name>   (opened by the turn manager through the OpenTelemetry API)
    │   ├── tts
    │   └── playout
    └── transfer              escalation.queue, transfer.outcome

Stage spans are written when the turn's record is final, from the instants the pipeline
already keeps (``TurnTimes``): the stages need no hooks of their own and cost nothing until the
record is written. ``customer.id`` is a keyed hash of the caller's number (never the number);
``journey.id`` is the first call of the caller's journey: their earliest call within
``tracing.journey_window_days``, so that repeat calls share one journey.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger
from opentelemetry import context as otel_context
from opentelemetry import trace

from voice.app.journey import customer_id, flow_node, flow_version, turn_intent
from voice.app.settings import TracingSettings
from voice.pipeline.records import TurnRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from voice.app.callstore import CallRecord, CallStore
    from voice.pipeline.session import CallSession

TRACER_NAME = "voice.ivr"


class TracedCall(Protocol):
    """What a trace reads of the call (``voice.app.call.Call``, which creates it)."""

    record: CallRecord
    session: CallSession | None

    @property
    def state(self) -> Any: ...
_TRUE = ("1", "true", "yes", "on")


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the OTEL_* variables ask for traces (see the module's docstring)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def exporters_from_env(env: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """The span exporters OTEL_TRACES_EXPORTER names (default otlp), each configured by its own
    OTEL_EXPORTER_OTLP_* variables. Raises ValueError naming the variable to fix."""
    env = os.environ if env is None else env
    out: list[SpanExporter] = []
    for name in (env.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(","):
        name = name.strip()
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out.append(ConsoleSpanExporter())
        elif name == "otlp":
            protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").lower()
            if protocol == "grpc":
                try:
                    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                        OTLPSpanExporter as GrpcExporter,
                    )
                except ImportError as error:
                    raise ValueError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the package "
                                     "opentelemetry-exporter-otlp-proto-grpc; install it or "
                                     "use http/protobuf") from error
                out.append(GrpcExporter())
            elif protocol == "http/protobuf":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                out.append(OTLPSpanExporter())
            else:
                raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use http/protobuf "
                                 "or grpc")
        elif name and name != "none":
            raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: use otlp, console or none")
    return out


class _Router:
    """The process's one SDK provider and the processors of the Tracing objects alive now.

    The SDK lets the global tracer provider be set once per process and has no way to remove a
    span processor; the turn manager's tool spans go through the global provider (it may use
    the OpenTelemetry API only). So one provider is installed, and each :class:`Tracing`
    attaches its processor here and detaches it when it closes (several servers in one test
    process, each with its own exporter)."""

    _lock = threading.Lock()
    _provider: TracerProvider | None = None
    _processors: list[SpanProcessor] = []

    @classmethod
    def provider(cls) -> TracerProvider:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

        with cls._lock:
            if cls._provider is None:
                router = cls

                class Fanout(SpanProcessor):
                    def on_start(self, span: Any, parent_context: Any = None) -> None:
                        for processor in list(router._processors):
                            processor.on_start(span, parent_context)

                    def on_end(self, span: Any) -> None:
                        for processor in list(router._processors):
                            processor.on_end(span)

                resource = Resource.create({"service.name": "voice-ivr"}) \
                    if not os.environ.get("OTEL_SERVICE_NAME") else Resource.create()
                provider = TracerProvider(resource=resource)
                provider.add_span_processor(Fanout())
                trace.set_tracer_provider(provider)
                if trace.get_tracer_provider() is not provider:
                    logger.warning("tracing: another tracer provider is installed globally; "
                                   "the turn manager's tool spans go there")
                cls._provider = provider
            return cls._provider

    @classmethod
    def attach(cls, processor: SpanProcessor) -> None:
        with cls._lock:
            cls._processors.append(processor)

    @classmethod
    def detach(cls, processor: SpanProcessor) -> None:
        with cls._lock:
            if processor in cls._processors:
                cls._processors.remove(processor)


def _key(settings: TracingSettings) -> bytes:
    """The customer-id key: configured, else kept in ``customer_key_file`` (created random,
    mode 0600, at first start) so ids stay stable across restarts."""
    if settings.customer_key is not None and settings.customer_key.get_secret_value():
        return settings.customer_key.get_secret_value().encode()
    path = Path(settings.customer_key_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key.encode()


class Tracing:
    """Traces for one server (``ivr serve``) or one simulated call.

    Args:
        settings: ``tracing`` settings (the customer-id key, the journey window).
        exporters: where spans go; None: as the OTEL_* variables say. Tests give the SDK's
            in-memory exporter.
        batch: export from a background thread in batches (``BatchSpanProcessor``, as in
            service); False exports each span as it ends (tests).
    """

    def __init__(self, settings: TracingSettings, exporters: list[SpanExporter] | None = None,
                 *, batch: bool = True) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        self.settings = settings
        self.key = _key(settings)
        provider = _Router.provider()
        self.tracer = provider.get_tracer(TRACER_NAME)
        exporters = exporters_from_env() if exporters is None else exporters
        kind = BatchSpanProcessor if batch else SimpleSpanProcessor
        self.processors = [kind(e) for e in exporters]
        for processor in self.processors:
            _Router.attach(processor)

    @classmethod
    def from_env(cls, settings: TracingSettings) -> Tracing | None:
        """A Tracing when the OTEL_* variables ask for one, else None (and nothing loaded)."""
        if not wanted():
            return None
        tracing = cls(settings)
        logger.info("tracing: exporting journey traces (OTEL_* variables)")
        return tracing

    def call(self, call: TracedCall) -> CallTrace:
        return CallTrace(self, call)

    def flush(self, timeout_s: float = 5.0) -> None:
        for processor in self.processors:
            processor.force_flush(int(timeout_s * 1000))

    def close(self) -> None:
        """Export what is pending and stop (blocks up to the exporter's timeout)."""
        for processor in self.processors:
            _Router.detach(processor)
            processor.shutdown()


def _ns(epoch_s: float) -> int:
    return int(epoch_s * 1e9)


class CallTrace:
    """The spans of one call; every method runs on the event loop."""

    def __init__(self, tracing: Tracing, call: TracedCall) -> None:
        self.tracing = tracing
        self.call = call
        # perf_counter instants (the turn records') to epoch nanoseconds
        self._offset_ns = time.time_ns() - time.perf_counter_ns()
        record = call.record
        self.customer = customer_id(record.caller_number, tracing.key)
        self.span = tracing.tracer.start_span(
            "call", start_time=_ns(record.started_at), attributes={
                "call.id": record.id, "call.transport": record.transport,
                **({"customer.id": self.customer} if self.customer else {})})
        self._parent = trace.set_span_in_context(self.span)
        self._turns: dict[int, trace.Span] = {}
        self._transfer: trace.Span | None = None

    def _at(self, perf_s: float) -> int:
        return int(perf_s * 1e9) + self._offset_ns

    def link_journey(self, store: CallStore | None) -> None:
        """``journey.id``: the caller's first call within the journey window, else this call.
        Blocking (a database read): run it in a thread."""
        record = self.call.record
        journey = None
        if store is not None and record.caller_number:
            since = record.started_at - self.tracing.settings.journey_window_days * 86400
            journey = store.journey_of(record.caller_number, since, before=record.started_at)
        journey = journey or record.id
        record.context["journey_id"] = journey
        if self.customer:
            record.context["customer_id"] = self.customer
        self.span.set_attribute("journey.id", journey)

    @contextlib.contextmanager
    def turn(self, index: int) -> Iterator[None]:
        """The span of caller turn ``index``, current while the turn manager answers it (so
        its tool spans are its children). It starts where the caller started speaking."""
        span = self._turn_span(index)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(token)

    @contextlib.contextmanager
    def keyed(self) -> Iterator[None]:
        """The call's span current while keyed digits are answered: a tool the keypad
        triggers (a CRM lookup after '#') is a child of the call, not a trace of its own."""
        token = otel_context.attach(self._parent)
        try:
            yield
        finally:
            otel_context.detach(token)

    def _turn_span(self, index: int) -> trace.Span:
        span = self._turns.get(index)
        if span is None:
            start = None
            session = self.call.session
            record = session.turns.get(index) if session is not None else None
            if record is not None and record.times.speech_end is not None:
                spoken = max(0.0, record.speech_end_s - record.speech_start_s)
                start = self._at(record.times.speech_end - spoken)
            span = self.tracing.tracer.start_span(f"turn {index}", context=self._parent,
                                                  start_time=start,
                                                  attributes={"turn.index": index})
            self._turns[index] = span
        return span

    def turn_done(self, record: TurnRecord) -> None:
        """The turn's record is final: its stage spans, its attributes, and its end."""
        span = self._turn_span(record.index)
        state = self.call.state
        t = record.times
        parent = trace.set_span_in_context(span)
        spoken = max(0.0, record.speech_end_s - record.speech_start_s)
        text_ready = t.tts_start or t.first_text
        manager_start = None if t.confirmed is None else t.confirmed + record.nlu_ms / 1000
        stages = [
            ("listen", None if t.speech_end is None else t.speech_end - spoken, t.asr_start),
            ("asr", t.asr_start, t.asr_end),
            ("nlu", t.confirmed, manager_start if text_ready else None),
            ("turn_manager", manager_start, text_ready),
            ("tts", text_ready, t.tts_first_audio),
            ("playout", t.tts_first_audio, t.first_sample),
        ]
        for name, start, end in stages:
            if start is not None and end is not None and end >= start:
                self.tracing.tracer.start_span(name, context=parent,
                                               start_time=self._at(start)).end(self._at(end))
        attributes: dict[str, Any] = {"journey.stage": flow_node(state, record.index),
                                      "turn.budget": record.budget_status,
                                      "turn.barge_in": record.barge_in}
        if record.total_ms is not None:
            attributes["turn.latency_ms"] = record.total_ms
        intent = turn_intent(state, record.index)
        if intent is not None:
            attributes["intent.name"], attributes["intent.confidence"] = intent
        version = flow_version(self.call.record.context, state)
        if version:
            attributes["flow.version"] = version
        span.set_attributes(attributes)
        span.end(self._at(t.first_sample) if t.first_sample is not None else None)
        self._turns.pop(record.index, None)

    def transfer_started(self, queue: str) -> None:
        self._transfer = self.tracing.tracer.start_span(
            "transfer", context=self._parent, attributes={"escalation.queue": queue})

    def transfer_ended(self, outcome: str | None) -> None:
        if self._transfer is not None:
            if outcome:
                self._transfer.set_attribute("transfer.outcome", outcome)
            self._transfer.end()
            self._transfer = None

    def finish(self, journey: dict[str, Any]) -> None:
        """The call is over and summarized (``voice.app.journey.summarize``)."""
        for index in list(self._turns):  # turns whose record never became final
            self._turns.pop(index).end()
        self.transfer_ended(journey.get("transfer_outcome"))
        record = self.call.record
        attributes: dict[str, Any] = {"call.outcome": journey["outcome"],
                                      "call.end_reason": record.end_reason or "unknown",
                                      "intents.recognized": journey["recognized"],
                                      "intents.served": journey["served"]}
        version = flow_version(record.context, self.call.state)
        if version:
            attributes["flow.version"] = version
        for key, name in (("queue", "escalation.queue"),
                          ("escalation_reason", "escalation.reason"),
                          ("transfer_outcome", "transfer.outcome")):
            if journey.get(key):
                attributes[name] = journey[key]
        self.span.set_attributes(attributes)
        self.span.end(_ns(record.ended_at) if record.ended_at else None)
