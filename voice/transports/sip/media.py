"""The bridge between a pjsua2 call's audio and asyncio.

``BridgePort`` is an ``AudioMediaPort`` on PJSIP's conference bridge. PJSIP's media clock thread
calls it every frame: ``onFrameReceived`` with the caller's audio, ``onFrameRequested`` for ours.
Both do as little as possible there, because that thread clocks every call: a received frame is
copied into a bounded deque and the asyncio loop is woken (at most one wake-up in flight); a
requested frame is taken from a non-blocking source (the call's playout buffer) or is silence.
Nothing in either callback waits on the loop, a lock held by Python code for long, or I/O.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import pjsua2 as pj

from voice.transports.sip.pjbuffer import vector_bytes

FrameSource = Callable[[], bytes | None]


class BridgePort(pj.AudioMediaPort):
    """One call leg's audio in and out, at ``rate`` Hz in ``frame_ms`` frames of int16 mono."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: int, frame_ms: int,
                 inbox_frames: int, name: str) -> None:
        super().__init__()
        self.loop = loop
        self.rate = rate
        self.frame_ms = frame_ms
        self.frame_bytes = rate * frame_ms // 1000 * 2
        self.name = name
        self.silence = bytes(self.frame_bytes)
        self._silence_vector = pj.ByteVector(self.silence)
        self.inbox: deque[bytes] = deque(maxlen=inbox_frames)
        self.source: FrameSource | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0  # caller frames the pipeline did not take in time
        self.frames_short = 0  # requested frames our source could not fill (silence sent)
        self._wake_pending = False
        self._ready = asyncio.Event()
        self.closed = False

    def create(self) -> None:
        """Register with PJSIP (on the endpoint thread)."""
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = self.rate
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = self.frame_ms * 1000
        fmt.avgBps = fmt.maxBps = self.rate * 16
        self.createPort(self.name, fmt)

    # -- PJSIP's media clock thread ----------------------------------------------------------------

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO or self.closed:
            return
        pcm = vector_bytes(frame.buf)
        if len(self.inbox) == self.inbox.maxlen:
            self.frames_dropped += 1
        self.inbox.append(pcm)
        self.frames_in += 1
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop is closed: the process is stopping
                pass

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        source = self.source
        pcm = source() if source is not None and not self.closed else None
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        if pcm is None or len(pcm) != self.frame_bytes:
            if pcm is not None:
                self.frames_short += 1
            frame.buf = self._silence_vector
            frame.size = self.frame_bytes
            return
        frame.buf = pj.ByteVector(pcm)
        frame.size = len(pcm)
        self.frames_out += 1

    # -- the asyncio loop --------------------------------------------------------------------------

    def _wake(self) -> None:
        self._wake_pending = False
        self._ready.set()

    async def receive(self) -> list[bytes]:
        """The caller frames queued since the last call (waits for at least one)."""
        while not self.inbox:
            self._ready.clear()
            if self.inbox:
                break
            await self._ready.wait()
        frames = []
        while self.inbox:
            frames.append(self.inbox.popleft())
        return frames

    def stats(self) -> dict[str, int]:
        return {"frames_in": self.frames_in, "frames_out": self.frames_out,
                "frames_dropped": self.frames_dropped, "frames_short": self.frames_short}
