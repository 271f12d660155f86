"""The reply audio waiting to be played, read by the transport's clock.

A transport pulls one frame at a time on its own clock (PJSIP's media thread, a WebSocket
sender, the simulated caller), so the buffer is thread-safe and never blocks: a pull with nothing
queued returns silence, and the first pull of a reply reports the instant its first sample left.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

MAX_BUFFER_S = 120.0  # a reply longer than this is cut: the buffer never grows without bound


class PlayoutEventKind(StrEnum):
    FIRST_SAMPLE = "first-sample"  # a reply's first sample was handed to the transport
    SENTENCE_PLAYED = "sentence-played"
    REPLY_PLAYED = "reply-played"  # the reply's last sample was handed to the transport


@dataclass(frozen=True)
class PlayoutEvent:
    kind: PlayoutEventKind
    reply_id: int
    turn_index: int
    sentence: str
    at: float  # perf_counter()


@dataclass
class _Segment:
    reply_id: int
    turn_index: int
    sentence: str
    pcm: bytes
    last: bool
    offset: int = 0


@dataclass(frozen=True)
class Interrupted:
    reply_id: int
    turn_index: int
    sentence: str  # the sentence that was playing when the reply was cut


class PlayoutBuffer:
    """Reply audio in arrival order; ``pull`` is called by the transport every frame."""

    def __init__(self, sample_rate: int, frame_ms: int) -> None:
        self.sample_rate = sample_rate
        self.frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._silence = bytes(self.frame_bytes)
        self._segments: deque[_Segment] = deque()
        self._queued_bytes = 0
        self._started: set[int] = set()
        # (reply id, turn index, sentence) of the reply heard last, from its first sample to its
        # last: a pause between two of its sentences (the next one still being synthesized)
        # leaves it under way with nothing queued.
        self._under_way: tuple[int, int, str] | None = None
        self._lock = threading.Lock()
        self._max_bytes = int(MAX_BUFFER_S * sample_rate * 2)

    @property
    def playing(self) -> bool:
        with self._lock:
            return bool(self._segments)

    @property
    def reply_under_way(self) -> bool:
        """A reply was begun and not finished: its audio is queued, or the caller hears a pause
        between its sentences while the next one is synthesized. Speech then is barge-in."""
        with self._lock:
            return bool(self._segments) or self._under_way is not None

    def add(self, reply_id: int, turn_index: int, sentence: str, pcm: bytes, last: bool) -> None:
        with self._lock:
            if self._queued_bytes + len(pcm) > self._max_bytes:
                pcm = pcm[: max(0, self._max_bytes - self._queued_bytes)]
            self._segments.append(_Segment(reply_id, turn_index, sentence, pcm, last))
            self._queued_bytes += len(pcm)

    def pull(self) -> tuple[bytes, list[PlayoutEvent]]:
        """One frame of audio (silence-padded) and what happened while taking it."""
        events: list[PlayoutEvent] = []
        with self._lock:
            if not self._segments:
                return self._silence, events
            out = bytearray()
            now = time.perf_counter()
            while self._segments and len(out) < self.frame_bytes:
                seg = self._segments[0]
                take = seg.pcm[seg.offset: seg.offset + self.frame_bytes - len(out)]
                if take and seg.reply_id not in self._started:
                    self._started.add(seg.reply_id)
                    events.append(PlayoutEvent(PlayoutEventKind.FIRST_SAMPLE, seg.reply_id,
                                               seg.turn_index, seg.sentence, now))
                if take:  # a newer reply heard ends an older one cut without its last piece
                    self._under_way = (seg.reply_id, seg.turn_index, seg.sentence)
                out += take
                seg.offset += len(take)
                self._queued_bytes -= len(take)
                if seg.offset >= len(seg.pcm):
                    self._segments.popleft()
                    nxt = self._segments[0] if self._segments else None
                    if seg.sentence and (nxt is None or nxt.sentence != seg.sentence
                                         or nxt.reply_id != seg.reply_id):
                        events.append(PlayoutEvent(PlayoutEventKind.SENTENCE_PLAYED,
                                                   seg.reply_id, seg.turn_index, seg.sentence,
                                                   now))
                    if seg.last:
                        if self._under_way is not None and self._under_way[0] == seg.reply_id:
                            self._under_way = None
                        events.append(PlayoutEvent(PlayoutEventKind.REPLY_PLAYED, seg.reply_id,
                                                   seg.turn_index, seg.sentence, now))
            if len(out) < self.frame_bytes:
                out += self._silence[: self.frame_bytes - len(out)]
            return bytes(out), events

    def clear(self) -> tuple[Interrupted | None, set[int]]:
        """Drop everything queued (barge-in).

        Returns what was playing, if anything was, and the turns whose replies were dropped
        before a sample of them was heard.
        """
        with self._lock:
            playing = next((s for s in self._segments if s.reply_id in self._started), None)
            unheard = {s.turn_index for s in self._segments if s.reply_id not in self._started}
            under_way, self._under_way = self._under_way, None
            self._segments.clear()
            self._queued_bytes = 0
        if playing is not None:
            return Interrupted(playing.reply_id, playing.turn_index, playing.sentence), unheard
        if under_way is not None:  # cut in a pause between its sentences
            return Interrupted(*under_way), unheard
        return None, unheard
