"""A browser caller over WebRTC as a ``CallLine``.

aiortc terminates the peer connection (ICE, DTLS-SRTP, Opus). The caller's Opus arrives decoded
at 48 kHz and is resampled here to the pipeline's 16 kHz in 20 ms frames; our 16 kHz reply
frames go out through ``ReplyTrack``, which aiortc's Opus encoder resamples back to 48 kHz.

The peer connection reports a clean close (the page hangs up, DTLS close) and ICE failure; a peer
that simply vanishes is caught sooner by the media timeout (browsers send Opus frames all the
time, muted or not), because ICE consent freshness alone takes about 30 s to give up.

Besides the audio, the page opens a data channel: the line sends it each finished turn (both
sides' text and the reply's latency as the pipeline measured it) and takes ``hangup`` and
``dtmf`` messages from it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from loguru import logger

from voice.app.settings import WebRtcSettings
from voice.transports.base import AudioSource, LineEvent, LineEventKind, LineInfo
from voice.transports.webrtc.media_loop import MediaLoop, media_loop

RATE = 16000  # the pipeline's rate; Opus itself runs at 48 kHz
INBOX_FRAMES = 50  # caller frames queued for the pipeline (1 s); older ones are dropped


class ReplyTrack(MediaStreamTrack):
    """Our side of the call: one 20 ms frame from the call's source per tick, silence when it
    has none. aiortc's sender calls ``recv`` for the next frame; the pacing is ours (as in
    aiortc's own ``AudioStreamTrack``, whose frames are silence only)."""

    kind = "audio"

    def __init__(self, frame_ms: int) -> None:
        super().__init__()
        self.samples = RATE * frame_ms // 1000
        self.frame_s = frame_ms / 1000
        self.source: AudioSource | None = None
        self.silence = bytes(self.samples * 2)
        self.frames_out = 0
        self.frames_short = 0
        self.frames_late = 0  # frames handed to aiortc over a frame late (a busy event loop)
        self.late_max_s = 0.0
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += self.samples
            due = self._start + self._pts / RATE
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            late = time.monotonic() - due
            if late > self.frame_s:
                self.frames_late += 1
            self.late_max_s = max(self.late_max_s, late)
        source = self.source
        pcm = source() if source is not None else None
        if pcm is None or len(pcm) != len(self.silence):
            if pcm is not None:
                self.frames_short += 1
            pcm = self.silence
        else:
            self.frames_out += 1
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, RATE)
        return frame


class WebRtcCallLine:
    """One browser call. Built by the signalling router once the offer is accepted; the call
    core then answers it like any other line."""

    def __init__(self, settings: WebRtcSettings, info: LineInfo, frame_ms: int = 20,
                 media: MediaLoop | None = None) -> None:
        self.pc: RTCPeerConnection | None = None  # set on the media loop (``bind``)
        self.media = media or media_loop()
        self._main = asyncio.get_running_loop()  # the call core's loop
        self._wake_pending = False
        self.settings = settings
        self.info = info
        self.ended = asyncio.Event()
        self.reply = ReplyTrack(frame_ms)
        self.frame_bytes = RATE * frame_ms // 1000 * 2
        self.end_cause: str | None = None  # how the line ended: hangup, closed, media-timeout...
        self.codec_name: str | None = None
        self.channel: Any = None  # the page's data channel (RTCDataChannel)
        self._by_us = False
        self._inbox: deque[bytes] = deque(maxlen=INBOX_FRAMES)
        self._ready = asyncio.Event()
        self._first_audio = asyncio.Event()
        self._events: asyncio.Queue[LineEvent] = asyncio.Queue()
        self._pending = bytearray()
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        self._reader: Any = None  # concurrent future of the read task on the media loop
        self.frames_in = 0
        self.frames_dropped = 0
        # A warm transfer bridges this line to a SIP agent in software, as a carrier stream's
        # (voice.transports.carrier.bridge): these are what that bridge uses.
        self.rate = RATE
        self.name = f"webrtc {info.external_id}"
        self.on_caller_frame: Callable[[bytes], None] | None = None
        self.bridge: Any = None

    # -- set up by the signalling router -----------------------------------------------------------

    def bind(self, pc: RTCPeerConnection) -> None:
        """The peer connection (on the media loop, where its events arrive)."""
        self.pc = pc
        pc.on("connectionstatechange", self._state_changed)
        pc.on("datachannel", self._channel_opened)

    def take_track(self, track: MediaStreamTrack) -> None:
        """The caller's audio track: read it, on the media loop, until it ends or stops
        sending."""
        self._reader = self.media.spawn(self._read(track))

    def _on_main(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._main.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the IVR's loop is closed: the process is stopping
            pass

    def _channel_opened(self, channel: Any) -> None:  # media loop
        self.channel = channel
        channel.on("message", lambda message: self._on_main(self._message, message))

    def _message(self, message: Any) -> None:
        try:
            data = json.loads(message)
        except (TypeError, ValueError):
            return  # the page only sends JSON objects; anything else is ignored
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "hangup":
            self._end("hangup")
            self.media.spawn(self.pc.close())
        elif kind == "dtmf" and str(data.get("digit", "")) in "0123456789*#" \
                and len(str(data.get("digit", ""))) == 1:
            self._events.put_nowait(LineEvent(LineEventKind.DTMF, digit=str(data["digit"]),
                                              method="datachannel"))

    def send(self, message: dict[str, Any]) -> None:
        """A JSON message to the page, if its data channel is open (sent on the media loop)."""
        self.media.call(self._send_now, json.dumps(message))

    def _send_now(self, text: str) -> None:  # media loop
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(text)
            except Exception as error:  # noqa: BLE001 - a closing channel must not end the call
                logger.debug(f"webrtc: data channel send failed: {error}")

    def send_turn(self, turn: dict[str, Any]) -> None:
        """A ``Call.on_turn_hooks`` hook: each finished turn, as the page shows it (text is
        already redacted in turn records)."""
        self.send({"type": "turn", "turn": turn.get("turn"),
                   "caller_text": turn.get("caller_text"), "reply_text": turn.get("reply_text"),
                   "total_ms": turn.get("total_ms"), "barge_in": turn.get("barge_in")})

    # -- the peer connection -----------------------------------------------------------------------

    async def _state_changed(self) -> None:  # media loop
        state = self.pc.connectionState
        logger.info(f"webrtc {self.info.external_id}: connection {state}")
        if state == "failed":
            self._on_main(self._end, "ice-failed")
            await self.pc.close()
        elif state == "closed":
            self._on_main(self._end, "closed")

    async def _read(self, track: MediaStreamTrack) -> None:
        """Caller frames in, 48 kHz Opus decoded -> 16 kHz 20 ms frames; ends the line when the
        track ends or stops sending for ``media_timeout_s``. Runs on the media loop: frames go
        to the call core's loop through the inbox deque and one wake-up at a time."""
        timeout = self.settings.connect_timeout_s
        heard = False
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), timeout)
                except TimeoutError:
                    self._on_main(self._end, "media-timeout" if heard else "connect-timeout")
                    break
                timeout = self.settings.media_timeout_s
                if self.codec_name is None:
                    self.codec_name = f"opus/{frame.sample_rate}/{len(frame.layout.channels)}"
                for out in self._resampler.resample(frame):
                    self._pending += out.to_ndarray().tobytes()
                while len(self._pending) >= self.frame_bytes:
                    if len(self._inbox) == self._inbox.maxlen:
                        self.frames_dropped += 1
                    pcm = bytes(self._pending[:self.frame_bytes])
                    del self._pending[:self.frame_bytes]
                    self._inbox.append(pcm)
                    self.frames_in += 1
                    forward = self.on_caller_frame
                    if forward is not None:
                        self._on_main(forward, pcm)
                if not heard:
                    heard = True
                    self._on_main(self._first_audio.set)
                if not self._wake_pending:
                    self._wake_pending = True
                    self._on_main(self._wake)
        except MediaStreamError:
            self._on_main(self._end, "track-ended")
        if not self._by_us:
            await self.pc.close()

    def _wake(self) -> None:
        self._wake_pending = False
        self._ready.set()

    def _end(self, cause: str) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        if not self.ended.is_set():
            self.end_cause = cause
            logger.info(f"webrtc {self.info.external_id}: ended ({cause})")
            self.ended.set()
        self._ready.set()  # a receive() waiting returns

    # -- CallLine ----------------------------------------------------------------------------------

    @property
    def ended_by_us(self) -> bool:
        return self._by_us

    def agent_line(self, sip: Any) -> Any:
        """How warm transfers reach agents from a browser: dialled over SIP (``sip``, a
        ``SipAgentLine``) and bridged by the IVR, which stays in the media path (there is no
        PJSIP leg to join on the conference bridge, and no SIP dialog to REFER)."""
        from voice.transports.carrier.bridge import StreamAgentLine

        return StreamAgentLine(sip)

    @property
    def codec(self) -> str | None:
        return self.codec_name

    async def answer(self) -> int | None:
        waits = [asyncio.ensure_future(self._first_audio.wait()),
                 asyncio.ensure_future(self.ended.wait())]
        try:
            await asyncio.wait(waits, timeout=self.settings.connect_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if self._first_audio.is_set() and not self.ended.is_set():
            self.send({"type": "answered"})
            return RATE
        if not self.ended.is_set():
            self._end("connect-timeout")
        return None

    async def receive(self) -> list[bytes]:
        while not self._inbox:
            if self.ended.is_set():
                await asyncio.Event().wait()  # the call core ends the call on ``ended``
            self._ready.clear()
            if self._inbox:
                break
            await self._ready.wait()
        frames = list(self._inbox)
        self._inbox.clear()
        return frames

    def play_from(self, source: AudioSource | None) -> None:
        self.reply.source = source

    async def next_event(self) -> LineEvent:
        return await self._events.get()

    async def hangup(self, code: int = 0) -> None:
        if self.ended.is_set():
            return
        self._by_us = True
        self.send({"type": "bye"})
        self._end("ivr-hangup")
        if self._reader is not None:
            self._reader.cancel()
        if self.pc is not None:
            await self.media.run(self.pc.close())

    def end_details(self) -> dict[str, Any]:
        return {"frames": {"frames_in": self.frames_in, "frames_out": self.reply.frames_out,
                           "frames_dropped": self.frames_dropped,
                           "frames_short": self.reply.frames_short,
                           "frames_late": self.reply.frames_late,
                           "late_max_ms": round(self.reply.late_max_s * 1000, 1)},
                "webrtc_end": self.end_cause}
