"""A Twilio stand-in for tests and benchmarks: it does what Twilio does for one call.

It POSTs the voice webhook signed as Twilio signs it (form fields as Twilio sends them), reads the
``<Connect><Stream>`` TwiML, opens the stream URL and speaks the Media Streams protocol as
Twilio's documentation gives it: ``connected``, ``start`` (μ-law 8 kHz mono, custom parameters),
``media`` every 20 ms in real time with ``sequenceNumber``/``chunk``/``timestamp``, ``dtmf``,
``mark`` echoes and ``stop``. Like Twilio it plays what it receives from a buffer: each ``media``
frame plays after the frames before it, a ``mark`` is echoed once everything sent before it has
played, and ``clear`` empties the buffer and echoes the marks still waiting.

Everything it heard is kept on a timeline at 8 kHz whose zero is the first frame it sent, so
onsets of replies compare with the recording's own utterance times (caller-side truth).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

import numpy as np
import websockets

from voice.audio import mulaw_decode, mulaw_encode
from voice.transports.carrier.signature import twilio_signature

RATE = 8000
FRAME = 160  # 20 ms


@dataclass
class Received:
    """What came back over the stream."""

    media: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival s, μ-law)
    marks: list[tuple[float, str]] = field(default_factory=list)  # (arrival s, name)
    clears: list[float] = field(default_factory=list)
    other: list[dict] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""


def signed_webhook(base_url: str, auth_token: str, params: dict[str, str], *,
                   signature: str | None = None, tamper: dict[str, str] | None = None,
                   path: str = "/twilio/voice") -> tuple[int, str]:
    """POST the voice webhook as Twilio does; (status, body). ``tamper`` changes fields after
    signing (what an attacker replaying a request would do)."""
    url = base_url.rstrip("/") + path
    items = list(params.items())
    if signature is None:
        signature = twilio_signature(auth_token, url, items)
    sent = {**params, **(tamper or {})}
    body = urllib.parse.urlencode(sent).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature,
        "User-Agent": "TwilioProxy/1.1"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def call_params(call_sid: str, caller: str = "+15551230001",
                called: str = "+18005550100") -> dict[str, str]:
    """The form fields of Twilio's voice webhook for an incoming call."""
    return {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "CallSid": call_sid,
            "CallStatus": "ringing", "Called": called, "Caller": caller, "Direction": "inbound",
            "From": caller, "To": called}


def stream_url_of(twiml: str) -> str:
    match = re.search(r'<Stream url="([^"]+)"', twiml)
    if match is None:
        raise AssertionError(f"no <Stream url> in {twiml!r}")
    return match.group(1).replace("&amp;", "&")


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex


class TwilioStream:
    """One media stream, from Twilio's side."""

    def __init__(self, url: str, call_sid: str) -> None:
        self.url = url
        self.call_sid = call_sid
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.account_sid = "AC" + "0" * 32
        self.ws = None
        self.seq = 0
        self.chunk = 0
        self.t0: float | None = None  # when the first media frame was sent
        self._clock = 0.0  # when the next frame is due, seconds after t0
        self.sent: list[tuple[float, float]] = []  # (due, sent) of every media frame
        self.received = Received()
        self._play_end = 0.0  # when our (Twilio's) buffer will have played everything
        self._pending_marks: list[tuple[float, str]] = []
        self._reader: asyncio.Task | None = None
        self._marker: asyncio.Task | None = None
        self.closed = asyncio.Event()

    def now(self) -> float:
        return time.perf_counter() - (self.t0 if self.t0 is not None else time.perf_counter())

    async def open(self, *, start: bool = True) -> TwilioStream:
        self.ws = await websockets.connect(self.url, max_size=2 ** 20)
        self._reader = asyncio.create_task(self._read())
        self._marker = asyncio.create_task(self._echo_marks())
        try:
            await self.send(self.connected_message())
            if start:
                await self.start()
        except websockets.ConnectionClosed:
            pass  # refused at once (a bad token): ``received`` says how
        return self

    def connected_message(self) -> dict:
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}

    async def start(self, call_sid: str | None = None) -> None:
        await self.send({
            "event": "start", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "start": {"accountSid": self.account_sid, "streamSid": self.stream_sid,
                      "callSid": call_sid or self.call_sid, "tracks": ["inbound"],
                      "customParameters": {},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}})

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def send(self, message: dict | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def media(self, ulaw: bytes, sequence: int | None = None) -> dict:
        self.chunk += 1
        return {"event": "media", "sequenceNumber": str(sequence) if sequence else self._next(),
                "streamSid": self.stream_sid,
                "media": {"track": "inbound", "chunk": str(self.chunk),
                          "timestamp": str((self.chunk - 1) * 20),
                          "payload": base64.b64encode(ulaw).decode()}}

    async def play(self, pcm: np.ndarray, *, dtmf: dict[float, str] | None = None) -> None:
        """Send ``pcm`` (int16, 8 kHz) in real time, 20 ms per message, continuing the stream's
        clock from the previous call; ``dtmf`` keys at seconds into it."""
        keys = sorted((dtmf or {}).items())
        if self.t0 is None:
            self.t0 = time.perf_counter()
        if self.now() - self._clock > 0.1:
            self._clock = self.now()  # the caller paused between plays: the clock restarts
        for i in range(0, len(pcm), FRAME):
            frame = pcm[i:i + FRAME]
            if len(frame) < FRAME:
                frame = np.concatenate([frame, np.zeros(FRAME - len(frame), np.int16)])
            while keys and keys[0][0] <= i / RATE:
                await self.dtmf(keys.pop(0)[1])
            at = self._clock
            await asyncio.sleep(max(0.0, at - self.now()))
            if self.closed.is_set():
                return
            await self.send(self.media(mulaw_encode(frame)))
            self.sent.append((at, self.now()))
            self._clock += FRAME / RATE

    def sent_late_s(self, t: float) -> float:
        """How late the frame holding second ``t`` of the stream left, against its schedule
        (a busy machine delays the sender; latency counts from when speech really left)."""
        for nominal, actual in self.sent:
            if nominal <= t < nominal + FRAME / RATE:
                return actual - nominal
        return 0.0

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "streamSid": self.stream_sid,
                         "sequenceNumber": self._next(),
                         "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self) -> None:
        await self.send({"event": "stop", "sequenceNumber": self._next(),
                         "streamSid": self.stream_sid,
                         "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})

    def mark_echo(self, name: str) -> dict:
        """The ``mark`` that says our audio before it has played."""
        return {"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                "mark": {"name": name}}

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        for task in (self._reader, self._marker):
            if task is not None:
                task.cancel()

    async def wait_closed(self, timeout_s: float) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout_s)

    # -- Twilio's playback buffer ------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                now = self.now()
                event = message.get("event")
                if event == "media":
                    ulaw = base64.b64decode(message["media"]["payload"])
                    start = max(now, self._play_end)
                    self._play_end = start + len(ulaw) / RATE
                    self.received.media.append((start, ulaw))
                elif event == "mark":
                    self._pending_marks.append((self._play_end, message["mark"]["name"]))
                elif event == "clear":
                    self.received.clears.append(now)
                    self._play_end = now
                    self.received.media = [(t, u) for t, u in self.received.media if t < now]
                    await self._flush_marks(force=True)
                else:
                    self.received.other.append(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.received.close_code = self.ws.close_code
            self.received.close_reason = self.ws.close_reason or ""
            self.closed.set()

    async def _echo_marks(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            await self._flush_marks()

    async def _flush_marks(self, force: bool = False) -> None:
        now = self.now()
        while self._pending_marks and (force or self._pending_marks[0][0] <= now):
            _, name = self._pending_marks.pop(0)
            self.received.marks.append((now, name))
            try:
                await self.send(self.mark_echo(name))
            except websockets.ConnectionClosed:
                return

    def heard(self) -> np.ndarray:
        """What was played to the caller, on the timeline (int16, 8 kHz)."""
        if not self.received.media:
            return np.zeros(0, np.int16)
        end = max(t for t, _ in self.received.media) + 0.1
        out = np.zeros(int(end * RATE) + FRAME, np.int16)
        for t, ulaw in self.received.media:
            pcm = mulaw_decode(ulaw)
            i = int(t * RATE)
            out[i:i + len(pcm)] = pcm[: len(out) - i]
        return out


async def place_call(base_url: str, auth_token: str, *, caller: str = "+15551230001",
                     call_sid: str | None = None) -> TwilioStream:
    """Webhook, then the stream opened and started: a connected call."""
    call_sid = call_sid or new_call_sid()
    status, twiml = await asyncio.to_thread(signed_webhook, base_url, auth_token,
                                            call_params(call_sid, caller))
    if status != 200:
        raise AssertionError(f"webhook answered {status}: {twiml}")
    return await TwilioStream(stream_url_of(twiml), call_sid).open()
