"""A recorded caller: plays a recording into a call session in real time and records the replies.

The simulated transport is full duplex on one 20 ms clock, like a sound card or an RTP stream:
every tick it sends one frame of the caller's recording (silence once the recording is over) and
takes one frame of our reply. The written WAV holds both sides, time-aligned (left: caller,
right: IVR), so what the caller heard and when can be checked by ear or by tools.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voice.audio import AudioChunk, read_audio, resample, write_wav
from voice.records import TurnRecord
from voice.session import CallSession
from voice.settings import IvrSettings
from voice.turns import CallInfo, TurnHandler

MAX_TAIL_S = 20.0  # after the recording ends, wait at most this long for the last reply


@dataclass
class SimulationResult:
    turns: list[TurnRecord]
    caller_rate: int
    transport_rate: int
    duration_s: float
    feed_start: float  # perf_counter() when the first caller frame was sent
    reply_onsets: list[float] = field(default_factory=list)  # perf_counter() of reply starts
    conversation: np.ndarray | None = None  # (n, 2) int16: caller, IVR
    reason: str = "completed"


def transport_rate_for(rate: int) -> int:
    """Telephone and wideband rates pass as they are; anything else is carried at 16 kHz."""
    return rate if rate in (8000, 16000) else 16000


async def simulate_call(recording: Path | str | AudioChunk, settings: IvrSettings, *,
                        realtime: bool = True, handler: TurnHandler | None = None,
                        on_turn=None, tail_s: float = 2.0, call_info: CallInfo | None = None
                        ) -> SimulationResult:
    """Play ``recording`` as a caller; returns every turn record and the two-sided audio."""
    chunk = recording if isinstance(recording, AudioChunk) else read_audio(recording)
    rate = transport_rate_for(chunk.sample_rate)
    caller = resample(chunk.samples, chunk.sample_rate, rate)
    frame = rate * settings.audio.frame_ms // 1000
    frame_s = settings.audio.frame_ms / 1000
    records: list[TurnRecord] = []

    def collect(record: TurnRecord) -> None:
        records.append(record)
        if on_turn is not None:
            on_turn(record)

    session = CallSession(settings, rate, handler=handler, on_turn=collect, fast=not realtime,
                          call_info=call_info)
    await session.start()
    caller_out: list[np.ndarray] = []
    ivr_out: list[bytes] = []
    onsets: list[float] = []
    silence = np.zeros(frame, dtype=np.int16)
    n_frames = (len(caller) + frame - 1) // frame
    tail_frames = int(MAX_TAIL_S / frame_s)
    min_tail = int(tail_s / frame_s)
    feed_start = time.perf_counter()
    i = 0
    was_playing = False
    while True:
        if i < n_frames:
            pcm = caller[i * frame:(i + 1) * frame]
            if len(pcm) < frame:
                pcm = np.concatenate([pcm, silence[: frame - len(pcm)]])
        else:
            settled = not session.bot_speaking and len(session.turns) == len(records) \
                and not session.listen.segmenter.in_turn
            if (i >= n_frames + min_tail and settled) or i >= n_frames + tail_frames:
                break
            pcm = silence
        if realtime:
            await asyncio.sleep(max(0.0, feed_start + i * frame_s - time.perf_counter()))
        await session.push_audio(pcm.tobytes())
        if not realtime:
            await session.wait_frames_processed(i + 1)
            await session.listen.asr_settled()
            await _wait_for_reply(session)
        out = session.pull_audio()
        playing = session.bot_speaking or any(out)
        if playing and not was_playing:
            onsets.append(time.perf_counter())
        was_playing = session.bot_speaking
        caller_out.append(pcm)
        ivr_out.append(out)
        i += 1
        if session.hangup_requested.is_set():
            break
    await session.end("hangup" if session.hangup_requested.is_set() else "caller-finished")
    ivr = np.frombuffer(b"".join(ivr_out), dtype=np.int16)
    both = np.stack([np.concatenate(caller_out), ivr], axis=1)
    return SimulationResult(turns=sorted(records, key=lambda r: r.index),
                            caller_rate=chunk.sample_rate, transport_rate=rate,
                            duration_s=chunk.duration_s, feed_start=feed_start,
                            reply_onsets=onsets, conversation=both)


async def _wait_for_reply(session: CallSession, timeout_s: float = 30.0) -> None:
    """--fast: stream time stands still while a reply is being written or synthesized."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        unanswered = any(r.times.first_text is None and not session.is_written(r.index)
                         for r in session.turns.values())
        if not (unanswered or session.replies_in_flight):
            return
        await asyncio.sleep(0.005)


def write_conversation(result: SimulationResult, path: Path | str, *, stereo: bool = False
                       ) -> None:
    """The reply audio (or both sides, in stereo) as a WAV at the transport rate."""
    if result.conversation is None:
        raise ValueError("no audio in this result")
    audio = result.conversation if stereo else result.conversation[:, 1]
    write_wav(path, audio, result.transport_rate)
