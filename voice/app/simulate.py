"""`ivr simulate`: a recording played as a caller through the same call core as a phone call.

``simulate_call`` wraps the recording in a ``RecordedLine`` and runs it as a ``Call``: the same
answer, pipeline, watchdog, goodbye and transfer hand-off as SIP, minus the network. The written
WAV holds both sides, time-aligned (left: caller, right: IVR), so what the caller heard and when
can be checked by ear or by tools.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from intents.dialogue.simple import EchoTurnHandler
from intents.dialogue.turns import CallInfo, TurnHandler
from voice.app.call import Call
from voice.app.settings import IvrSettings
from voice.audio import AudioChunk, read_audio, write_wav
from voice.pipeline.records import TurnRecord
from voice.transports.base import LineInfo
from voice.transports.recorded import RecordedLine, transport_rate_for

__all__ = ["SimulationResult", "simulate_call", "transport_rate_for", "write_conversation"]


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


async def simulate_call(recording: Path | str | AudioChunk, settings: IvrSettings, *,
                        realtime: bool = True, handler: TurnHandler | None = None,
                        on_turn=None, tail_s: float = 2.0, call_info: CallInfo | None = None
                        ) -> SimulationResult:
    """Play ``recording`` as a caller; returns every turn record and the two-sided audio."""
    chunk = recording if isinstance(recording, AudioChunk) else read_audio(recording)
    info = LineInfo(transport="recorded",
                    caller_number=call_info.caller_number if call_info else None,
                    called_number=call_info.called_number if call_info else None)
    line = RecordedLine(chunk, settings.audio.frame_ms, realtime=realtime, tail_s=tail_s,
                        info=info)
    records: list[TurnRecord] = []

    def collect(record: TurnRecord) -> None:
        records.append(record)
        if on_turn is not None:
            on_turn(record)

    call = Call(line, settings, handler or EchoTurnHandler(settings.call.greeting), None,
                shutdown=asyncio.Event(), realtime=realtime, on_turn=collect,
                call_id=call_info.call_id if call_info else None)
    await call.run()
    return SimulationResult(turns=sorted(records, key=lambda r: r.index),
                            caller_rate=chunk.sample_rate, transport_rate=line.rate,
                            duration_s=chunk.duration_s, feed_start=line.feed_start,
                            reply_onsets=line.reply_onsets, conversation=line.conversation(),
                            reason=call.record.end_reason or "completed")


def write_conversation(result: SimulationResult, path: Path | str, *, stereo: bool = False
                       ) -> None:
    """The reply audio (or both sides, in stereo) as a WAV at the transport rate."""
    if result.conversation is None:
        raise ValueError("no audio in this result")
    audio = result.conversation if stereo else result.conversation[:, 1]
    write_wav(path, audio, result.transport_rate)
