"""Carrier media stream calls (Twilio Media Streams, Telnyx media streaming): the signed webhook,
the stream token, and whole calls over a real `ivr serve` with clients that speak each protocol
as the carrier documents it (bench.twilio_client, bench.telnyx_client).

The protocol pieces are checked alone first (Twilio's published signature examples, tokens,
malformed messages). Then one server (turn manager, the shipped menu) takes real-time calls: a
caller keys 1, speaks a demo recording, talks over the reply; what came back is checked with
Whisper, with the stream's marks and clears, and in the call record.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import pytest
import websockets

from bench import telnyx_client
from bench.harness import IvrProcess
from bench.twilio_client import (
    TwilioStream,
    call_params,
    new_call_sid,
    place_call,
    signed_webhook,
    stream_url_of,
)
from voice.transports.carrier import telnyx
from voice.transports.carrier.signature import (
    telnyx_public_key,
    telnyx_signature_problem,
    twilio_signature,
    valid_twilio_signature,
)
from voice.transports.carrier.tokens import StreamTokens, TokenError
from voice.transports.carrier.twilio import ProtocolError, parse_message

AUTH_TOKEN = "test-twilio-auth-token"
TELNYX_KEY, TELNYX_PUBLIC_KEY = telnyx_client.new_key_pair()  # a test account's key pair
SILENCE_S = 5.0  # call.max_silence_s of the test server


def test_signature_matches_twilios_published_examples():
    # The examples of Twilio's own helper library (twilio-python, tests/unit/test_request_validator)
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"), ("From", "+14158675309"),
              ("To", "+18005551212"), ("Caller", "+14158675309")]
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    # signed with the default port, or with a port the request URL carries
    assert valid_twilio_signature("12345", url, params, "kvajT1Ptam85bY51eRf/AJRuM3w=")
    assert valid_twilio_signature("12345", url.replace(".com", ".com:1234"), params,
                                  "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert valid_twilio_signature("12345", url.replace("https", "http"), params,
                                  "0ZXoZLH/DfblKGATFgpif+LLRf4=")
    # anything changed: refused
    assert not valid_twilio_signature("12346", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not valid_twilio_signature("12345", url, params[:-1] + [("Caller", "+1")],
                                      "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not valid_twilio_signature("12345", url + "&x=1", params,
                                      "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not valid_twilio_signature("12345", url, params, None)


def test_stream_tokens_are_signed_single_use_and_expire():
    tokens = StreamTokens("secret", ttl_s=30)
    token = tokens.issue("CA1", "+1555", "+1800")
    grant = tokens.check(token)
    assert (grant.call_id, grant.caller_number, grant.called_number) == ("CA1", "+1555", "+1800")
    with pytest.raises(TokenError, match="already used"):
        tokens.check(token)
    body, _, mac = tokens.issue("CA2", None, None).partition(".")
    forged = StreamTokens("other secret", ttl_s=30).issue("CA2", None, None)
    for bad, why in [(None, "missing"), ("", "missing"), (body, "invalid"),
                     (body + "." + mac[:-2] + "AA", "invalid"), (forged, "invalid"),
                     ("x.y", "invalid")]:
        with pytest.raises(TokenError, match=why):
            tokens.check(bad)
    short = StreamTokens("secret", ttl_s=0.01)
    old = short.issue("CA3", None, None)
    time.sleep(0.05)
    with pytest.raises(TokenError, match="expired"):
        short.check(old)


@pytest.mark.parametrize("message, problem", [
    ("{not json", "not JSON"),
    ("[1, 2]", "not an object"),
    ('{"sequenceNumber": "1"}', "no 'event'"),
    ('{"event": "media", "media": {"payload": "!!!notbase64"}}', "not base64"),
    ('{"event": "media", "media": {}}', "payload"),
    ('{"event": "media"}', "'media' object"),
    ('{"event": "media", "sequenceNumber": "x1", "media": {"payload": ""}}', "sequenceNumber"),
    ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "digit"),
    ('{"event": "mark", "mark": {}}', "name"),
    (b"\xff\xfe\x00binary", "not JSON"),
    ("{" + " " * 70000 + "}", "limit"),
])
def test_malformed_messages_are_named_not_raised(message, problem):
    with pytest.raises(ProtocolError, match=problem):
        parse_message(message)


def test_media_message_as_twilio_sends_it():
    ulaw = bytes(range(160))
    text = json.dumps({"event": "media", "sequenceNumber": "3", "streamSid": "MZ1",
                       "media": {"track": "inbound", "chunk": "1", "timestamp": "5",
                                 "payload": base64.b64encode(ulaw).decode()}})
    message = parse_message(text)
    assert (message.event, message.sequence, message.stream_id, message.payload) == \
        ("media", 3, "MZ1", ulaw)


def test_telnyx_signature_is_ed25519_over_timestamp_and_body():
    body = b"CallSid=v3%3Aabc&From=%2B15551230002&To=%2B18005550100"
    now = 1_700_000_000
    signed = base64.b64encode(TELNYX_KEY.sign(f"{now}|".encode() + body)).decode()
    key = telnyx_public_key(TELNYX_PUBLIC_KEY)

    def problem(body=body, signature=signed, timestamp=str(now), at=now + 5):
        return telnyx_signature_problem(key, body, signature, timestamp, 300, now=at)

    assert problem() is None
    assert problem(body=body.replace(b"2B1555", b"2B1999")) == "invalid signature"
    assert problem(timestamp=str(now + 1)) == "invalid signature"  # the timestamp is signed too
    assert problem(at=now + 301) == problem(at=now - 301) == "stale timestamp"
    other, _ = telnyx_client.new_key_pair()
    assert problem(signature=base64.b64encode(other.sign(f"{now}|".encode() + body)).decode()) \
        == "invalid signature"
    assert problem(signature=None) == problem(timestamp="") == "no signature"
    assert problem(signature="not base64!") == problem(timestamp="soon") == "malformed signature"
    with pytest.raises(ValueError, match="telnyx_public_key"):
        telnyx_public_key("c2hvcnQ=")  # base64, but not 32 bytes


def test_telnyx_messages_as_telnyx_sends_them():
    ulaw = bytes(range(160))
    media = {"event": "media", "sequence_number": "4", "stream_id": "32de0dea",
             "media": {"track": "inbound", "chunk": "2", "timestamp": "5",
                       "payload": base64.b64encode(ulaw).decode()}}
    message = telnyx.parse_message(json.dumps(media))
    assert (message.event, message.sequence, message.stream_id, message.payload) == \
        ("media", 4, "32de0dea", ulaw)
    media["media"]["track"] = "outbound"  # our own audio, had both tracks been asked for
    assert telnyx.parse_message(json.dumps(media)).event == "media-other-track"
    error = telnyx.parse_message('{"event": "error", "payload": {"code": 100002, '
                                 '"title": "Unknown error", "detail": "x"}}')
    assert error.detail == "100002 Unknown error"
    start = {"call_control_id": "v3:1", "media_format": {"encoding": "PCMU",
                                                          "sample_rate": 8000, "channels": 1}}
    telnyx.check_start(start)
    with pytest.raises(ProtocolError, match="unsupported media format 'PCMA'"):
        telnyx.check_start({**start, "media_format": {"encoding": "PCMA", "sample_rate": 8000}})
    for bad, problem in [('{"event": "media", "media": {"payload": "%%"}}', "not base64"),
                         ('{"event": "media", "sequence_number": "x"}', "sequence_number"),
                         ('{"event": "dtmf", "dtmf": {}}', "digit"), ("[]", "not an object")]:
        with pytest.raises(ProtocolError, match=problem):
            telnyx.parse_message(bad)
    dialect = telnyx.TelnyxDialect()
    assert json.loads(dialect.media(b"\xff")) == {"event": "media", "media": {"payload": "/w=="}}
    assert json.loads(dialect.clear()) == {"event": "clear"}
    assert json.loads(dialect.mark("ivr-1")) == {"event": "mark", "mark": {"name": "ivr-1"}}


# -- a real server -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ivr(tmp_path_factory):
    server = IvrProcess(tmp_path_factory.mktemp("carrier"), {
        "carrier": {"twilio_auth_token": AUTH_TOKEN, "telnyx_public_key": TELNYX_PUBLIC_KEY,
                    "max_bad_messages": 20},
        "call": {"max_silence_s": SILENCE_S}})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def base(ivr):
    return f"http://127.0.0.1:{ivr.http_port}"


def heard_text(pcm: np.ndarray) -> str:
    from voice.app.settings import IvrSettings
    from voice.audio import resample
    from voice.engines import shared_engines

    if np.abs(pcm).max(initial=0) < 300:
        return ""  # never feed Whisper silence
    return shared_engines(IvrSettings()).transcriber.transcribe(
        resample(pcm, 8000, 16000), 16000).text.lower()


def demo(name: str) -> np.ndarray:
    from pathlib import Path

    from voice.audio import read_audio

    chunk = read_audio(Path(__file__).parents[1] / "voice/app/demo_calls" / f"{name}.wav")
    assert chunk.sample_rate == 8000
    return chunk.samples


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 8000), np.int16)


def record_of(ivr: IvrProcess, call_sid: str) -> dict:
    return ivr.wait_call(lambda c: c["sip_call_id"] == call_sid, timeout_s=30)


@pytest.mark.slow
def test_webhook_answers_a_signed_request_and_refuses_a_forged_one(ivr, base):
    sid = new_call_sid()
    status, twiml = signed_webhook(base, AUTH_TOKEN, call_params(sid))
    assert status == 200, twiml
    assert "<Connect><Stream url=" in twiml
    assert stream_url_of(twiml).startswith(f"ws://127.0.0.1:{ivr.http_port}/twilio/stream/")
    forged = [
        signed_webhook(base, AUTH_TOKEN, call_params(sid), tamper={"From": "+19990000000"}),
        signed_webhook(base, "another-account-token", call_params(sid)),
        signed_webhook(base, AUTH_TOKEN, call_params(sid), signature=""),
        signed_webhook(base, AUTH_TOKEN, call_params(sid), signature="not base64 at all"),
    ]
    for status, body in forged:
        assert status == 403, body
        assert "Stream" not in body


async def closed_with(url: str, call_sid: str, *, start: bool = True) -> tuple[int, str]:
    stream = await TwilioStream(url, call_sid).open(start=start)
    await stream.wait_closed(15)
    return stream.received.close_code, stream.received.close_reason


@pytest.mark.slow
def test_stream_without_a_valid_token_is_closed_with_the_reason(ivr, base):
    ws = f"ws://127.0.0.1:{ivr.http_port}/twilio/stream"
    sid = new_call_sid()
    _, twiml = signed_webhook(base, AUTH_TOKEN, call_params(sid))
    url = stream_url_of(twiml)
    token = url.rsplit("/", 1)[1]
    body, _, mac = token.partition(".")
    other_sid = new_call_sid()
    _, other = signed_webhook(base, AUTH_TOKEN, call_params(other_sid))

    async def run() -> list:
        return [await closed_with(ws, sid),
                await closed_with(f"{ws}/{body}.{mac[::-1]}", sid),
                await closed_with(f"{ws}/garbage", sid),
                await closed_with(stream_url_of(other), sid)]  # a token for another call

    results = asyncio.run(run())
    assert results[0] == (1008, "missing stream token")
    assert results[1] == (1008, "invalid stream token")
    assert results[2] == (1008, "invalid stream token")
    assert results[3] == (1008, "stream does not match its token")
    # the other call's token was spent on the mismatched stream: it cannot be used again
    assert asyncio.run(closed_with(stream_url_of(other), other_sid)) == \
        (1008, "stream token already used")
    assert not [c for c in ivr.calls() if c["sip_call_id"] in (sid, other_sid)]


async def until(predicate, timeout_s: float, stream: TwilioStream) -> None:
    """Keep the line alive with silence (as Twilio does) until ``predicate()``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await stream.play(silence(0.1))


@pytest.mark.slow
def test_twilio_call_keys_speech_barge_in_and_record(ivr, base, engines):
    """Keys 1, speaks, then talks over the IVR's reply; hangs up with ``stop``."""
    caller = demo("order_question_8k")  # "Hi, I'm calling about my order." ... "Can you tell
    first, second = caller[int(0.3 * 8000):int(2.7 * 8000)], caller[int(5.9 * 8000):]

    async def run() -> tuple[TwilioStream, dict]:
        stream = await place_call(base, AUTH_TOKEN)
        media = stream.received.media
        marks = {}
        # the greeting, then the key
        await until(lambda: media and stream.now() - media[-1][0] > 0.6, 15, stream)
        marks["greeting_end"] = stream.now()
        await stream.dtmf("1")
        await until(lambda: media and media[-1][0] > marks["greeting_end"]
                    and stream.now() - media[-1][0] > 0.6, 15, stream)
        marks["keyed_reply_end"] = stream.now()
        await stream.play(first)
        marks["spoke"] = stream.now()
        # talk over the reply once a second of it has come and while it is still coming (a
        # busy machine may pause between its sentences)
        await until(lambda: sum(1 for t, _ in media if t > marks["spoke"]) >= 50
                    and stream.now() - media[-1][0] < 0.1, 20, stream)
        marks["barge_in"] = stream.now()
        await stream.play(np.concatenate([second, second]))
        await stream.play(silence(2.0))
        await until(lambda: stream.now() - media[-1][0] > 0.6, 15, stream)
        await stream.stop()
        await stream.wait_closed(10)
        return stream, marks

    stream, at = asyncio.run(run())
    got = stream.received
    audio = stream.heard()

    def said(a: float, b: float) -> str:
        return heard_text(audio[int(a * 8000):int(b * 8000)])

    assert "order number" in said(at["greeting_end"], at["keyed_reply_end"])  # key 1: the menu
    interrupted = said(at["spoke"], at["barge_in"])  # the reply to the caller's words, cut
    assert "number" in said(at["spoke"], len(audio) / 8000)
    assert [t for t in got.clears if t > at["barge_in"]], "no clear after the caller barged in"
    assert got.marks, "no mark came back"
    assert len({name for _, name in got.marks}) == len(got.marks)
    assert (got.close_code, got.close_reason) == (1000, "stream stopped")

    record = record_of(ivr, stream.call_sid)
    assert record["transport"] == "twilio"
    assert record["codec"] == "PCMU/8000"
    assert record["caller_number"] == "+15551230001"
    assert record["end_reason"] == "caller-hangup"
    context = record["context"]
    assert context["dtmf_events"] == 1 and context["dtmf_methods"] == ["twilio"]
    assert context["stream"]["end"] == "stop"
    assert context["stream"]["clears"] >= 1
    assert context["stream"]["marks_played"] == len(got.marks)
    assert context["stream"]["problems"] == {}
    assert context["frames"]["frames_dropped"] == 0
    turns = record["turns"]
    assert len(turns) >= 2
    assert "order" in turns[0]["caller_text"].lower()
    assert " ".join(interrupted.split()[:3]) in turns[0]["reply_text"].lower()
    assert any(t["reply_interrupted"] or t["barge_in"] for t in turns)
    assert all(t["total_ms"] is not None for t in turns[:1])


@pytest.mark.slow
def test_bad_messages_on_a_live_stream_are_logged_and_the_call_goes_on(ivr, base):
    async def run() -> TwilioStream:
        stream = await place_call(base, AUTH_TOKEN)
        await stream.play(silence(0.2))
        await stream.send("{this is not json")
        await stream.send(json.dumps([1, 2, 3]))
        await stream.send(json.dumps({"event": "media", "sequenceNumber": str(stream.seq + 1),
                                      "media": {"payload": "%%%%"}}))
        stream.seq += 1
        await stream.ws.send(b"\x00\x01binary")
        late = stream.media(bytes(160), sequence=2)  # long after message 2
        await stream.send(late)
        stream.seq += 3  # three messages "lost"
        await stream.send({"event": "mark", "sequenceNumber": stream._next(),
                           "streamSid": stream.stream_sid, "mark": {"name": "never-sent"}})
        media = stream.received.media
        await until(lambda: media and stream.now() - media[-1][0] > 0.6, 15, stream)
        before = len(media)
        await stream.dtmf("1")  # still heard: the menu answers
        await until(lambda: len(media) > before + 25, 15, stream)
        await stream.stop()
        await stream.wait_closed(10)
        return stream

    stream = asyncio.run(run())
    context = record_of(ivr, stream.call_sid)["context"]
    problems = context["stream"]["problems"]
    assert problems == {"malformed message": 4, "out-of-order message": 1, "sequence gap": 1,
                        "unknown mark": 1}
    assert context["stream"]["end"] == "stop"
    log = ivr.log()
    assert "media payload is not base64 (4 characters)" in log
    assert "out-of-order message (media #2 after" in log
    assert "%%%%" not in log


@pytest.mark.slow
def test_a_flood_of_malformed_messages_closes_the_stream(ivr, base):
    async def run() -> TwilioStream:
        stream = await place_call(base, AUTH_TOKEN)
        try:
            for i in range(25):
                await stream.send(f"garbage {i}")
        except websockets.ConnectionClosed:
            pass  # closed by the server after the 20th
        await stream.wait_closed(10)
        return stream

    stream = asyncio.run(run())
    assert (stream.received.close_code, stream.received.close_reason) == \
        (1003, "too many malformed messages")
    record = record_of(ivr, stream.call_sid)
    assert record["context"]["stream"]["end"] == "malformed-stream"
    assert record["context"]["stream"]["problems"]["malformed message"] == 20


@pytest.mark.slow
def test_a_stream_that_stops_sending_ends_with_a_goodbye(ivr, base, engines):
    async def run() -> TwilioStream:
        stream = await place_call(base, AUTH_TOKEN)
        await stream.play(silence(0.1))  # then nothing, as a stalled stream
        await stream.wait_closed(SILENCE_S + 30)
        return stream

    stream = asyncio.run(run())
    media = stream.received.media
    assert media, "nothing was said"
    audio = stream.heard()
    goodbye_from = max(0.0, media[-1][0] - 8.0)
    said = heard_text(audio[int(goodbye_from * 8000):])
    assert "end the call" in said or "goodbye" in said, said  # call.goodbye_silence
    assert stream.received.close_code == 1000
    assert stream.received.close_reason == "call ended"
    record = record_of(ivr, stream.call_sid)
    assert record["end_reason"] == "silence-timeout"
    assert record["context"]["stream"]["end"] == "closed-by-ivr"
    # the goodbye played to its end before the socket closed: its mark came back
    assert record["context"]["stream"]["marks_played"] == record["context"]["stream"]["marks_sent"]


@pytest.mark.slow
def test_a_socket_closed_without_stop_ends_and_records_the_call(ivr, base):
    async def run() -> TwilioStream:
        stream = await place_call(base, AUTH_TOKEN)
        await stream.play(silence(0.5))
        await stream.ws.close()  # the carrier's side vanished: no stop message
        return stream

    stream = asyncio.run(run())
    record = record_of(ivr, stream.call_sid)
    assert record["end_reason"] == "caller-hangup"
    assert record["context"]["stream"]["end"] == "socket-closed"
    assert record["context"]["frames"]["frames_in"] == 25


# -- Telnyx, on the same server ----------------------------------------------------------------------


@pytest.mark.slow
def test_telnyx_webhook_is_verified_and_its_stream_token_checked(ivr, base):
    sid = telnyx_client.new_call_sid()
    params = telnyx_client.texml_params(sid)
    status, texml = telnyx_client.signed_webhook(base, TELNYX_KEY, params)
    assert status == 200, texml
    url = telnyx_client.stream_url_of(texml)  # <Connect><Stream ... bidirectionalMode="rtp">
    assert url.startswith(f"ws://127.0.0.1:{ivr.http_port}/telnyx/stream/")
    other_key, _ = telnyx_client.new_key_pair()
    refused = [
        telnyx_client.signed_webhook(base, TELNYX_KEY, params, tamper={"From": "+19990000000"}),
        telnyx_client.signed_webhook(base, TELNYX_KEY, params, timestamp=int(time.time()) - 400),
        telnyx_client.signed_webhook(base, other_key, params),
        telnyx_client.signed_webhook(base, TELNYX_KEY, params, signature=""),
    ]
    assert [(status, "Stream" in body) for status, body in refused] == [(403, False)] * 4
    assert "stale timestamp" in refused[1][1]

    ws = f"ws://127.0.0.1:{ivr.http_port}/telnyx/stream"
    _, twilio_twiml = signed_webhook(base, AUTH_TOKEN, call_params(new_call_sid()))
    twilio_token = stream_url_of(twilio_twiml).rsplit("/", 1)[1]

    async def closed_with(url: str, call_sid: str) -> tuple[int, str]:
        stream = await telnyx_client.TelnyxStream(url, call_sid).open()
        await stream.wait_closed(15)
        return stream.received.close_code, stream.received.close_reason

    async def run() -> list:
        return [await closed_with(ws, sid),
                await closed_with(f"{ws}/{twilio_token}", sid),  # Twilio's token is not Telnyx's
                await closed_with(url, "v3:another-call")]

    assert asyncio.run(run()) == [(1008, "missing stream token"), (1008, "invalid stream token"),
                                  (1008, "stream does not match its token")]
    assert not [c for c in ivr.calls() if c["sip_call_id"] == sid]


@pytest.mark.slow
def test_telnyx_call_keys_speech_and_record(ivr, base, engines):
    """Bad messages first (counted, the call goes on), then keys 1, speaks, hangs up with
    ``stop``."""
    caller = demo("order_question_8k")  # "Hi, I'm calling about my order."
    first = caller[int(0.3 * 8000):int(2.7 * 8000)]

    async def run() -> tuple[telnyx_client.TelnyxStream, dict]:
        stream = await telnyx_client.place_call(base, TELNYX_KEY)
        media = stream.received.media
        await stream.play(silence(0.2))
        await stream.send("{not json")
        await stream.send(json.dumps({"event": "media", "sequence_number": stream._next(),
                                      "stream_id": stream.stream_sid,
                                      "media": {"track": "inbound", "payload": "%%%%"}}))
        await stream.send(stream.media(bytes(160), sequence=2))  # long after message 2
        marks = {}
        await until(lambda: media and stream.now() - media[-1][0] > 0.6, 15, stream)
        marks["greeting_end"] = stream.now()
        await stream.dtmf("1")
        await until(lambda: media and media[-1][0] > marks["greeting_end"]
                    and stream.now() - media[-1][0] > 0.6, 15, stream)
        marks["keyed_reply_end"] = stream.now()
        await stream.play(first)
        marks["spoke"] = stream.now()
        await stream.play(silence(1.0))
        await until(lambda: media[-1][0] > marks["spoke"]
                    and stream.now() - media[-1][0] > 0.8, 20, stream)
        await stream.stop()
        await stream.wait_closed(10)
        return stream, marks

    stream, at = asyncio.run(run())
    audio = stream.heard()

    def said(a: float, b: float) -> str:
        return heard_text(audio[int(a * 8000):int(b * 8000)])

    assert "order number" in said(at["greeting_end"], at["keyed_reply_end"])  # key 1: the menu
    assert "number" in said(at["spoke"], len(audio) / 8000)  # the reply to "about my order"
    got = stream.received
    assert got.marks and (got.close_code, got.close_reason) == (1000, "stream stopped")

    record = record_of(ivr, stream.call_sid)
    assert (record["transport"], record["codec"]) == ("telnyx", "PCMU/8000")
    assert record["caller_number"] == "+15551230002"
    assert record["end_reason"] == "caller-hangup"
    context = record["context"]
    assert context["dtmf_events"] == 1 and context["dtmf_methods"] == ["telnyx"]
    assert context["stream"]["end"] == "stop"
    assert context["stream"]["marks_played"] == len(got.marks)
    # the bad base64 message's number was never read, so the next one shows a gap
    assert context["stream"]["problems"] == {"malformed message": 2, "out-of-order message": 1,
                                             "sequence gap": 1}
    assert record["turns"] and "order" in record["turns"][0]["caller_text"].lower()
    assert "%%%%" not in ivr.log()
