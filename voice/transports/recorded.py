"""A recording played as a caller: a ``CallLine`` for ``ivr simulate``, tests and benchmarks.

Full duplex on one 20 ms clock, like a sound card or an RTP stream: every tick the line hands the
call core one frame of the recording (silence once it is over) and takes one frame of the reply.
In real time the clock is the wall clock. Faster than real time (``realtime=False``), stream time
stands still while the pipeline works: before the next frame, the line waits until the previous
one was processed, its transcription settled and any reply was written and synthesized, so a
test gets the same turns as a real-time call without waiting for them.

When the recording and a short tail are over and the IVR has nothing left to say, the caller
"hangs up" (``ended``); the IVR hanging up ends the line the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from voice.audio import AudioChunk, resample
from voice.transports.base import AudioSource, LineEvent, LineInfo

MAX_TAIL_S = 20.0  # after the recording ends, wait at most this long for the last reply
REPLY_WAIT_S = 30.0  # faster than real time: the longest a reply may take to be written


def transport_rate_for(rate: int) -> int:
    """Telephone and wideband rates pass as they are; anything else is carried at 16 kHz."""
    return rate if rate in (8000, 16000) else 16000


class RecordedLine:
    """Plays ``chunk`` as a caller and records both sides, time-aligned."""

    def __init__(self, chunk: AudioChunk, frame_ms: int, *, realtime: bool = True,
                 tail_s: float = 2.0, info: LineInfo | None = None) -> None:
        self.rate = transport_rate_for(chunk.sample_rate)
        self.caller = resample(chunk.samples, chunk.sample_rate, self.rate)
        self.frame = self.rate * frame_ms // 1000
        self.frame_s = frame_ms / 1000
        self.realtime = realtime
        self.info = info or LineInfo(transport="recorded")
        self.ended = asyncio.Event()
        self.codec = f"L16/{self.rate}"
        self.n_frames = (len(self.caller) + self.frame - 1) // self.frame
        self.min_tail = int(tail_s / self.frame_s)
        self.max_tail = int(MAX_TAIL_S / self.frame_s)
        self.caller_out: list[np.ndarray] = []
        self.ivr_out: list[bytes] = []
        self.reply_onsets: list[float] = []  # perf_counter() of reply starts
        self.feed_start = 0.0
        self._by_us = False
        self._source: AudioSource | None = None
        self._session: Any = None
        self._tick = 0
        self._was_playing = False
        self._silence = np.zeros(self.frame, dtype=np.int16)
        self._silent_reply = bytes(self.frame * 2)
        self._events: asyncio.Queue[LineEvent] = asyncio.Queue()

    @property
    def ended_by_us(self) -> bool:
        return self._by_us

    async def answer(self) -> int | None:
        return self.rate

    def attach(self, session: Any) -> None:
        """The call's pipeline, for pacing (``voice.app.call.Call`` hands it over)."""
        self._session = session

    def play_from(self, source: AudioSource | None) -> None:
        self._source = source

    async def next_event(self) -> LineEvent:
        return await self._events.get()

    async def hangup(self, code: int = 0) -> None:
        if not self.ended.is_set():
            self._by_us = True
            self.ended.set()

    def end_details(self) -> dict[str, Any]:
        return {"frames": {"frames_in": self._tick, "frames_out": len(self.ivr_out)}}

    async def receive(self) -> list[bytes]:
        """The next caller frame, once its tick has come; the line ends when the call is over."""
        i = self._tick
        session = self._session
        if i == 0:
            self.feed_start = time.perf_counter()
        elif not self.realtime:
            await session.wait_frames_processed(i)
            await session.asr_settled()
            await self._wait_for_reply()
        if i > 0:
            self._take_reply_frame()
        pcm = self._next_frame(i)
        if pcm is None:
            self.ended.set()
            await asyncio.Event().wait()  # the call core is ending the call
        if self.realtime:
            await asyncio.sleep(max(0.0, self.feed_start + i * self.frame_s
                                    - time.perf_counter()))
        self.caller_out.append(pcm)
        self._tick += 1
        return [pcm.tobytes()]

    def _next_frame(self, i: int) -> np.ndarray | None:
        """The caller's frame for tick ``i``: the recording, then silence; None when the caller
        hangs up (a subclass plays something else on the same clock)."""
        if i >= self.n_frames and self._over(i):
            return None
        if i >= self.n_frames:
            return self._silence
        pcm = self.caller[i * self.frame:(i + 1) * self.frame]
        if len(pcm) < self.frame:
            pcm = np.concatenate([pcm, self._silence[: self.frame - len(pcm)]])
        return pcm

    def _over(self, i: int) -> bool:
        if i >= self.n_frames + self.max_tail:
            return True
        return i >= self.n_frames + self.min_tail and self._session.settled

    def _take_reply_frame(self) -> None:
        out = (self._source() if self._source is not None else None) or self._silent_reply
        playing = self._session.bot_speaking or any(out)
        if playing and not self._was_playing:
            self.reply_onsets.append(time.perf_counter())
        self._was_playing = self._session.bot_speaking
        self.ivr_out.append(out)

    async def _wait_for_reply(self) -> None:
        """Faster than real time: stream time stands still while a reply is being written."""
        deadline = time.perf_counter() + REPLY_WAIT_S
        while time.perf_counter() < deadline and self._session.reply_pending:
            await asyncio.sleep(0.005)

    def conversation(self) -> np.ndarray:
        """(n, 2) int16: the caller, and the IVR as the caller heard it."""
        n = len(self.ivr_out)
        ivr = np.frombuffer(b"".join(self.ivr_out), dtype=np.int16)
        caller = np.concatenate(self.caller_out[:n]) if n else np.zeros(0, np.int16)
        return np.stack([caller, ivr], axis=1)
