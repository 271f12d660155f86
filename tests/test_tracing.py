"""Journey traces: a recorded caller asks for their order status through the real call core,
turn manager, CRM and SQLite call store; the spans reach the SDK's in-memory exporter and, over
OTLP/HTTP, a receiver on loopback that decodes the protobuf wire format."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from handoff.crm import DEMO_PHONE
from intents.config import load_menu
from intents.dialogue.manager import TurnManager
from intents.dialogue.simple import EchoTurnHandler
from models.registry import shared_registry
from voice.app.call import Call
from voice.app.callstore import CallStore
from voice.app.journey import customer_id, summarize
from voice.app.settings import TracingSettings
from voice.app.tracing import Tracing, exporters_from_env, wanted
from voice.audio import read_audio
from voice.transports.base import LineInfo
from voice.transports.recorded import RecordedLine

CALLS = Path(__file__).parent / "fixtures" / "calls"
KEY = "test-customer-key"


class OtlpReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: POST /v1/traces with an ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                receiver.content_types.append(self.headers.get("Content-Type", ""))
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def spans(self) -> list:
        return [span for request in self.requests for resource in request.resource_spans
                for scope in resource.scope_spans for span in scope.spans]


async def run_call(path: Path, handler, store: CallStore, tracing: Tracing, settings):
    line = RecordedLine(read_audio(path), settings.audio.frame_ms, realtime=False, tail_s=2.0,
                        info=LineInfo(transport="recorded", caller_number=DEMO_PHONE))
    call = Call(line, settings, handler, store, shutdown=asyncio.Event(), realtime=False,
                tracing=tracing)
    await call.run()
    return call


@pytest.fixture(scope="module")
def traced(settings, crm, classifier, tmp_path_factory):
    """One order-status call and one repeat call from the same number, traced into memory and
    over OTLP/HTTP to a loopback receiver configured by the OTEL_* variables."""
    receiver = OtlpReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
           "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert wanted()
        otlp = exporters_from_env()
    memory = InMemorySpanExporter()
    tmp = tmp_path_factory.mktemp("tracing")
    tracing = Tracing(TracingSettings(customer_key=KEY, customer_key_file=str(tmp / "key")),
                      [memory, *otlp], batch=False)
    store = CallStore(f"sqlite:///{tmp}/calls.sqlite", tmp / "spool")
    manager = TurnManager(load_menu(), classifier, crm, shared_registry().embedder())

    async def both():
        first = await run_call(CALLS / "order_status_8k.wav", manager, store, tracing, settings)
        again = await run_call(CALLS / "digits_8k.wav", EchoTurnHandler("Hello again."), store,
                               tracing, settings)
        return first, again

    first, again = asyncio.run(both())
    tracing.close()
    receiver.shutdown()
    yield {"first": first, "again": again, "spans": memory.get_finished_spans(),
           "receiver": receiver, "store": store}


def by_name(spans, name: str) -> list:
    return [s for s in spans if s.name == name]


@pytest.mark.slow
def test_a_call_is_a_tree_of_call_turn_and_stage_spans(traced):
    first = traced["first"]
    spans = [s for s in traced["spans"] if s.context.trace_id ==
             first.trace.span.get_span_context().trace_id]
    (call,) = by_name(spans, "call")
    # By index, not start time: this call runs faster than real time, where a turn's start (the
    # wall clock at its end of speech, less its length in stream time) does not keep the order.
    turns = sorted((s for s in spans if s.name.startswith("turn ")),
                   key=lambda s: s.attributes["turn.index"])
    rows = traced["store"].get(first.call_id)["turns"]
    assert [t.name for t in turns] == [f"turn {r['turn']}" for r in rows] and len(rows) >= 3
    assert all(t.parent.span_id == call.context.span_id for t in turns)
    for turn in turns:
        stages = [s for s in spans if s.parent is not None and
                  s.parent.span_id == turn.context.span_id]
        names = [s.name for s in sorted(stages, key=lambda s: s.start_time)]
        assert names[:2] == ["listen", "asr"] and {"nlu", "tts", "playout"} <= set(names), names
        assert all(turn.start_time <= s.start_time <= s.end_time <= turn.end_time + 1
                   for s in stages), names
    # The CRM lookup happens once the caller confirms the number: a child of that turn.
    (tool,) = by_name(spans, "tool order_status")
    (yes,) = [t for t, r in zip(turns, rows, strict=True) if r["caller_text"].startswith("Yes")]
    assert tool.parent.span_id == yes.context.span_id
    assert tool.attributes["tool.ok"] is True


@pytest.mark.slow
def test_spans_carry_the_journey_attributes_and_never_the_number(traced):
    first = traced["first"]
    spans = [s for s in traced["spans"] if s.context.trace_id ==
             first.trace.span.get_span_context().trace_id]
    (call,) = by_name(spans, "call")
    attributes = dict(call.attributes)
    assert attributes["customer.id"] == customer_id(DEMO_PHONE, KEY.encode())
    assert attributes["journey.id"] == first.call_id
    assert attributes["flow.version"] == load_menu().version
    assert attributes["call.outcome"] == "contained"
    assert list(attributes["intents.served"]) == ["order_status"]
    turn1 = next(s for s in spans if s.name == "turn 1")
    assert turn1.attributes["intent.name"] == "order_status"
    assert 0.0 < turn1.attributes["intent.confidence"] <= 1.0
    assert turn1.attributes["journey.stage"] == "order_status"
    assert turn1.attributes["turn.latency_ms"] > 0
    digits = "".join(c for c in DEMO_PHONE if c.isdigit())
    for span in traced["spans"]:
        for value in span.attributes.values():
            assert digits not in "".join(c for c in str(value) if c.isdigit()), span.name


@pytest.mark.slow
def test_a_repeat_call_joins_the_callers_journey_and_the_rows_say_so(traced):
    first, again = traced["first"], traced["again"]
    (call,) = [s for s in by_name(traced["spans"], "call")
               if s.attributes["call.id"] == again.call_id]
    assert call.attributes["journey.id"] == first.call_id
    assert call.attributes["customer.id"] == customer_id(DEMO_PHONE, KEY.encode())
    row = traced["store"].get(again.call_id)
    assert row["context"]["journey_id"] == first.call_id
    assert row["context"]["journey"]["outcome"] == "abandoned"  # the echo serves nothing
    stored = traced["store"].get(first.call_id)
    assert stored["context"]["journey"]["outcome"] == "contained"
    assert stored["turns"][0]["intent"] == "order_status"


@pytest.mark.slow
def test_otlp_http_carries_the_same_spans_in_protobuf(traced):
    receiver = traced["receiver"]
    assert receiver.requests and set(receiver.content_types) == {"application/x-protobuf"}
    received = receiver.spans()
    assert sorted(s.name for s in received) == sorted(s.name for s in traced["spans"])
    call = next(s for s in received if s.name == "call" and any(
        a.key == "call.id" and a.value.string_value == traced["first"].call_id
        for a in s.attributes))
    attributes = {a.key: a.value for a in call.attributes}
    assert attributes["call.outcome"].string_value == "contained"
    assert attributes["journey.id"].string_value == traced["first"].call_id
    resource = receiver.requests[0].resource_spans[0].resource
    assert any(a.key == "service.name" for a in resource.attributes)


def test_off_unless_the_otel_variables_ask():
    assert not wanted({})
    assert not wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
                       "OTEL_SDK_DISABLED": "true"})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"})
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        exporters_from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_a_tool_the_keypad_triggers_is_a_child_of_the_call(tmp_path):
    """Keyed digits are not a caller turn: what the turn manager opens through the API while
    it answers them goes under the call's span, not into a trace of its own."""
    from opentelemetry import trace

    from voice.app.callstore import CallRecord

    class KeyedCall:  # what a trace reads of a call: its row, no pipeline yet, no state
        record = CallRecord(id="keyed", started_at=time.time(), caller_number=DEMO_PHONE)
        session = None
        state = None

    memory = InMemorySpanExporter()
    tracing = Tracing(TracingSettings(customer_key=KEY), [memory], batch=False)
    call_trace = tracing.call(KeyedCall())
    tracer = trace.get_tracer("intents.dialogue")  # as the turn manager opens its tool spans
    with call_trace.keyed(), tracer.start_as_current_span("tool order_status"):
        pass
    call_trace.finish(summarize(None, "caller-hangup"))
    tracing.close()
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert spans["tool order_status"].parent.span_id == spans["call"].context.span_id
    assert spans["call"].attributes["call.outcome"] == "abandoned"
