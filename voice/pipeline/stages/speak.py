"""Speak stage: reply text -> Piper, one sentence at a time -> audio at the transport rate.

The first sentence is synthesized as soon as it is complete, so the caller hears it while the
rest of the reply is still being written or synthesized. Synthesis runs in a thread pool; a
barge-in cancels this stage's processing (pipecat's interruption) and the replies it cut are
ignored if more of their text arrives.
"""

from __future__ import annotations

import time

from pipecat.frames.frames import Frame, InterruptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.string import match_endofsentence

from voice.pipeline.clauses import first_clause_end
from voice.pipeline.context import CallContext
from voice.pipeline.frames import ReplyAudioFrame, ReplyTextFrame


class SpeakStage(FrameProcessor):
    def __init__(self, session: CallContext) -> None:
        super().__init__(name="speak")
        self.session = session
        self._text: dict[int, str] = {}  # reply id -> text not yet synthesized
        self._current: int | None = None
        self._cut: set[int] = set()
        self._started: set[int] = set()  # replies whose first words were synthesized

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ReplyTextFrame):
            await self._on_text(frame)
        elif isinstance(frame, InterruptionFrame):
            if self._current is not None:
                self._cut.add(self._current)
                self._text.pop(self._current, None)
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _on_text(self, frame: ReplyTextFrame) -> None:
        if frame.reply_id in self._cut:
            self.session.reply_synthesized(frame.reply_id)
            return
        self._current = frame.reply_id
        pending = self._text.get(frame.reply_id, "") + frame.text
        while True:
            end = match_endofsentence(pending)
            if frame.reply_id not in self._started:
                # The reply's first words go out alone up to a clause break: Piper takes about
                # 25 ms per word here, so a short opening clause is heard sooner.
                end = first_clause_end(pending, end)
            if not end:
                break
            await self._say(frame, pending[:end].strip(), last=False)
            pending = pending[end:]
        if frame.last:
            self._text.pop(frame.reply_id, None)
            await self._say(frame, pending.strip(), last=True)
            self._current = None
        else:
            self._text[frame.reply_id] = pending

    async def _say(self, frame: ReplyTextFrame, sentence: str, last: bool) -> None:
        audio = b""
        self._started.add(frame.reply_id)
        if sentence:
            record = self.session.turn(frame.turn_index) if frame.turn_index > 0 else None
            if record is not None and record.times.tts_start is None:
                record.times.tts_start = time.perf_counter()
            if record is not None:  # the clause may be ready already (prepared at the pause)
                audio, outcome = await self.session.speculation.claim(sentence, record.index)
                if outcome is not None and record.speculation is None:
                    record.speculation = outcome
            audio = audio or await self.session.synthesize(sentence)
            if record is not None and record.times.tts_first_audio is None:
                record.times.tts_first_audio = time.perf_counter()
        if last:
            self.session.reply_synthesized(frame.reply_id)
        if audio or last:
            await self.push_frame(ReplyAudioFrame(
                audio=audio, sample_rate=self.session.transport_rate, num_channels=1,
                reply_id=frame.reply_id, turn_index=frame.turn_index, sentence=sentence,
                last=last))
