"""Playout stage: the end of the pipeline, where reply audio waits for the transport's clock."""

from __future__ import annotations

from pipecat.frames.frames import Frame, InterruptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voice.pipeline.context import CallContext
from voice.pipeline.frames import ReplyAudioFrame


class PlayoutStage(FrameProcessor):
    def __init__(self, session: CallContext) -> None:
        super().__init__(name="playout")
        self.session = session

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ReplyAudioFrame):
            self.session.playout.add(frame.reply_id, frame.turn_index, frame.sentence,
                                     frame.audio, frame.last)
        elif isinstance(frame, InterruptionFrame):
            self.session.on_interrupted(*self.session.playout.clear())
        else:
            await self.push_frame(frame, direction)
