"""A carrier's media stream (Twilio, Telnyx) as a ``CallLine``: the caller's audio arrives over a
WebSocket, ours goes back over it. What differs between carriers is only how messages are
spelled: the line reads ``StreamMessage`` and writes through the carrier's ``Dialect``.

Audio in: each ``media`` message's μ-law is decoded and cut into the call's frames (20 ms, 160
bytes at 8 kHz, whatever size the messages carry) and queued for the call core, as SIP's bridge
port does. Messages are checked in arrival order by their sequence number: a late or repeated one
is dropped, a gap counted; a malformed one (not JSON, bad base64, a field missing) is logged by
what was wrong and counted; the stream is closed only after ``carrier.max_bad_messages`` in a row.

Audio out: the WebSocket has no clock of its own, so the line keeps one: every frame it takes one
frame from the call's playout buffer (the same ``AudioSource`` PJSIP's clock pulls for SIP) and
sends it, so the carrier's buffer holds about one frame and the playout buffer stays the truth
about what has been heard. Silence is not sent. When a reply's audio has gone out, a ``mark``
follows it; the carrier echoes it once that audio has played (its lag is in the call record), and
hanging up waits for the marks, so a goodbye is heard to its end. When the caller barges in, the
playout buffer is cleared by the pipeline and the line sends ``clear`` so the carrier drops what it
holds. Twilio and Telnyx both document ``mark`` and ``clear`` for bidirectional streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from loguru import logger
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voice.app.settings import CarrierSettings
from voice.audio import mulaw_decode, mulaw_encode
from voice.transports.base import AudioSource, LineEvent, LineEventKind, LineInfo
from voice.transports.carrier.messages import Dialect, ProtocolError, StreamMessage

LOGGED_PER_KIND = 5  # problems of one kind logged one by one; after that every 100th
CLOSE_NORMAL = 1000
CATCH_UP_FRAMES = 25  # a late send clock catches up to 500 ms at once; beyond, it restarts
CLOSE_UNSUPPORTED = 1003
RATE = 8000  # G.711 μ-law, both ways, on every carrier's stream


class _Problems:
    """Counts what was wrong with a stream, logging the first few of each kind."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}

    def add(self, kind: str, detail: str) -> None:
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n <= LOGGED_PER_KIND or n % 100 == 0:
            logger.warning(f"{self.name}: {kind} ({detail}); {n} so far")


class StreamLine:
    """One carrier media stream, after its ``start`` message, as a ``CallLine``."""

    def __init__(self, ws: WebSocket, settings: CarrierSettings, info: LineInfo,
                 dialect: Dialect, stream_id: str, *, frame_ms: int,
                 last_sequence: int | None = None) -> None:
        self.ws = ws
        self.settings = settings
        self.info = info
        self.dialect = dialect
        self.stream_id = stream_id
        self.name = f"{dialect.name} {stream_id}"
        self.ended = asyncio.Event()
        self.codec = f"PCMU/{RATE}"
        self.frame_ms = frame_ms
        self.frame_s = frame_ms / 1000
        self.rate = RATE
        self.frame_bytes = RATE * frame_ms // 1000 * 2  # int16
        self._silence = bytes(self.frame_bytes)
        self._ulaw_frame = self.frame_bytes // 2
        self._pending = bytearray()  # μ-law not yet a whole frame
        self._inbox: deque[bytes] = deque(maxlen=settings.inbox_frames)
        self._ready = asyncio.Event()
        self._events: asyncio.Queue[LineEvent] = asyncio.Queue()
        self._source: AudioSource | None = None
        self._session: Any = None
        self._interrupted_seen: Any = None
        self._by_us = False
        self._last_sequence = last_sequence
        self._bad_in_a_row = 0
        self.problems = _Problems(self.name)
        self.stop_reason: str | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self.clears = 0
        self._marks: dict[str, float] = {}  # name -> monotonic time sent, until echoed
        self._mark_count = 0
        self._mark_lags: list[float] = []
        self._marks_done = asyncio.Event()
        self._marks_done.set()
        self._unmarked = False  # audio sent since the last mark
        self._send_lock = asyncio.Lock()
        self.on_caller_frame: Callable[[bytes], None] | None = None  # a warm transfer's bridge
        self.bridge: Any = None  # voice.transports.carrier.bridge.AgentBridge, once connected

    # -- CallLine ---------------------------------------------------------------------------------

    @property
    def ended_by_us(self) -> bool:
        return self._by_us

    def agent_line(self, sip: Any) -> Any:
        """How warm transfers reach agents from this line: dialled over SIP (``sip``, a
        ``SipAgentLine``), bridged by the IVR (``voice.transports.carrier.bridge``)."""
        from voice.transports.carrier.bridge import StreamAgentLine

        return StreamAgentLine(sip)

    async def answer(self) -> int | None:
        return None if self.ended.is_set() else RATE

    def attach(self, session: Any) -> None:
        """The call's session (``voice.app.call.Call`` hands it over): its barge-ins send
        ``clear``."""
        self._session = session
        self._interrupted_seen = session.last_interrupted

    async def receive(self) -> list[bytes]:
        while not self._inbox:
            self._ready.clear()
            await self._ready.wait()
        frames = list(self._inbox)
        self._inbox.clear()
        return frames

    def play_from(self, source: AudioSource | None) -> None:
        self._source = source

    async def next_event(self) -> LineEvent:
        return await self._events.get()

    async def hangup(self, code: int = 0) -> None:
        """Close the stream once what we sent has played (the carrier then ends the call:
        nothing follows ``<Connect>`` in our TwiML or TeXML)."""
        if self.ended.is_set():
            return
        self._by_us = True
        if self._unmarked:
            await self._send_mark()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._marks_done.wait(), self.settings.mark_wait_s)
        self.stop_reason = self.stop_reason or "closed-by-ivr"
        await self._close(CLOSE_NORMAL, "call ended" if code < 400 else "call failed")

    def end_details(self) -> dict[str, Any]:
        lags = self._mark_lags
        return {
            "frames": {"frames_in": self.frames_in, "frames_out": self.frames_out,
                       "frames_dropped": self.frames_dropped},
            "stream": {"stream_id": self.stream_id, "end": self.stop_reason,
                       "problems": dict(self.problems.counts), "clears": self.clears,
                       "marks_sent": self._mark_count, "marks_played": len(lags),
                       "mark_lag_ms_p50": round(statistics.median(lags) * 1000, 1)
                       if lags else None,
                       "mark_lag_ms_max": round(max(lags) * 1000, 1) if lags else None}}

    # -- the stream -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read the caller's messages and send ours until the stream ends either way."""
        tasks = [asyncio.create_task(self._send_loop(), name=f"{self.name}-send"),
                 asyncio.create_task(self._read_loop(), name=f"{self.name}-read"),
                 asyncio.create_task(self.ended.wait(), name=f"{self.name}-ended")]
        try:
            await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.ended.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._marks_done.set()
            if self.bridge is not None:
                self.bridge.stop()
            await self._close(CLOSE_NORMAL, "stream stopped" if self.stop_reason == "stop"
                              else "call ended")

    async def _read_loop(self) -> None:
        while not self.ended.is_set():
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                break
            if message["type"] == "websocket.disconnect":
                self.stop_reason = self.stop_reason or "socket-closed"
                break
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            try:
                parsed = self.dialect.parse(data)
            except ProtocolError as error:
                if await self._bad("malformed message", str(error)):
                    break
                continue
            self._bad_in_a_row = 0
            if not self._in_order(parsed):
                continue
            if parsed.event == "media":
                self._on_media(parsed.payload)
            elif parsed.event == "dtmf":
                self._events.put_nowait(LineEvent(LineEventKind.DTMF, digit=parsed.digit,
                                                  method=self.dialect.name))
            elif parsed.event == "mark":
                self._on_mark(parsed.mark)
            elif parsed.event == "error":
                self.problems.add("carrier error", parsed.detail)
            elif parsed.event == "stop":
                self.stop_reason = "stop"
                logger.info(f"{self.name}: stopped by the carrier")
                break

    async def _bad(self, kind: str, detail: str) -> bool:
        """Count a bad message; True when the stream has sent too many in a row."""
        self.problems.add(kind, detail)
        self._bad_in_a_row += 1
        if self._bad_in_a_row < self.settings.max_bad_messages:
            return False
        logger.warning(f"{self.name}: {self._bad_in_a_row} malformed messages in a row; closing")
        self.stop_reason = "malformed-stream"
        await self._close(CLOSE_UNSUPPORTED, "too many malformed messages")
        return True

    def _in_order(self, message: StreamMessage) -> bool:
        """Sequence numbers rise by one per message; a late or repeated one is dropped (its
        audio would be played out of place), a skipped one counted."""
        seq = message.sequence
        if seq is None:
            return True
        last = self._last_sequence
        if last is not None and seq <= last:
            self.problems.add("out-of-order message",
                              f"{message.event} #{seq} after #{last}; dropped")
            return False
        if last is not None and seq > last + 1:
            self.problems.add("sequence gap", f"#{last} then #{seq}")
        self._last_sequence = seq
        return True

    def _on_media(self, ulaw: bytes) -> None:
        self._pending += ulaw
        step = self._ulaw_frame
        while len(self._pending) >= step:
            chunk = bytes(self._pending[:step])
            del self._pending[:step]
            if len(self._inbox) == self._inbox.maxlen:
                self.frames_dropped += 1
            pcm = mulaw_decode(chunk).tobytes()
            self._inbox.append(pcm)
            self.frames_in += 1
            if self.on_caller_frame is not None:
                self.on_caller_frame(pcm)
        if self._inbox:
            self._ready.set()

    def _on_mark(self, name: str) -> None:
        sent = self._marks.pop(name, None)
        if sent is None:
            self.problems.add("unknown mark", f"{len(name)} characters")
            return
        self._mark_lags.append(time.monotonic() - sent)
        if not self._marks:
            self._marks_done.set()

    async def _send_loop(self) -> None:
        """Our audio on our own 20 ms clock, with absolute deadlines (no drift). When the loop
        was late (a busy event loop), the frames that fell due are sent at once: the far end
        buffers them, and a reply or a bridged agent plays whole instead of losing what the
        clock skipped. After a stall longer than ``CATCH_UP_FRAMES`` the clock restarts."""
        next_at = time.monotonic()
        while not self.ended.is_set():
            next_at += self.frame_s
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            due = 1 + max(0, int((time.monotonic() - next_at) / self.frame_s))
            if due > CATCH_UP_FRAMES:
                next_at, due = time.monotonic(), 1
            next_at += (due - 1) * self.frame_s
            try:
                for _ in range(due):
                    await self._tick()
            except (WebSocketDisconnect, RuntimeError, OSError) as error:
                logger.info(f"{self.name}: send failed ({type(error).__name__}); stream over")
                self.stop_reason = self.stop_reason or "socket-closed"
                self.ended.set()
                return

    async def _tick(self) -> None:
        session = self._session
        if session is not None and session.last_interrupted is not self._interrupted_seen:
            self._interrupted_seen = session.last_interrupted
            await self._send(self.dialect.clear())
            self.clears += 1
            self._unmarked = False  # the carrier returns the pending marks itself
        source = self._source
        pcm = source() if source is not None else None
        if pcm is None or pcm == self._silence or len(pcm) != self.frame_bytes:
            if self._unmarked:
                await self._send_mark()
            return
        await self._send(self.dialect.media(mulaw_encode(np.frombuffer(pcm, dtype=np.int16))))
        self.frames_out += 1
        self._unmarked = True

    async def _send_mark(self) -> None:
        self._mark_count += 1
        name = f"ivr-{self._mark_count}"
        self._marks[name] = time.monotonic()
        self._marks_done.clear()
        self._unmarked = False
        await self._send(self.dialect.mark(name))

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send_text(text)

    async def _close(self, code: int, reason: str) -> None:
        self.ended.set()
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await self.ws.close(code, reason)
