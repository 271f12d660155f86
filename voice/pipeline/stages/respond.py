"""Respond stage: confirmed caller turns -> the turn handler -> reply text, under the budget.

The handler runs in a task owned by this stage rather than inside ``process_frame``, because a
barge-in cancels pipecat's processing task and a turn manager must not be cut in the middle of a
tool call; instead the reply it produces is dropped downstream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputDTMFFrame,
    InterruptionFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.string import match_endofsentence

from intents.dialogue.turns import CallerTurn, Reply
from voice.pipeline.context import CallContext
from voice.pipeline.frames import (
    CallerTurnFrame,
    ExpectFrame,
    ReplyTextFrame,
    ResumeReplyFrame,
    SayFrame,
)
from voice.pipeline.records import LadderStep


def split_sentences(text: str) -> list[str]:
    """Sentences in the order spoken (pipecat's sentence matcher, applied repeatedly)."""
    sentences, rest = [], text.strip()
    while rest:
        end = match_endofsentence(rest)
        if not end:
            sentences.append(rest)
            break
        sentences.append(rest[:end].strip())
        rest = rest[end:].strip()
    return [s for s in sentences if s]


class RespondStage(FrameProcessor):
    def __init__(self, session: CallContext) -> None:
        super().__init__(name="respond")
        self.session = session
        self._answer_task: asyncio.Task | None = None
        self._ack_task: asyncio.Task | None = None
        self._reply_ids = 0
        self.replies: dict[int, str] = {}  # reply id -> full text said (for resumption)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            greeting = await self.session.handler.start_call(self.session.call_info)
            if greeting is not None:
                await self._expect_after(greeting)  # a greeting may ask for a value at once
                self._start_answer(turn_index=0, reply=greeting)
        elif isinstance(frame, CallerTurnFrame):
            await self._start_turn(frame.turn)
        elif isinstance(frame, InputDTMFFrame):
            reply = await self.session.handler.handle_dtmf(str(frame.button.value))
            if reply is not None:
                await self._expect_after(reply)
                self._start_answer(turn_index=0, reply=reply)
        elif isinstance(frame, ResumeReplyFrame):
            await self._resume(frame.reply_id)
        elif isinstance(frame, SayFrame):
            await self._cancel_answer()
            self._start_answer(turn_index=0, reply=Reply(text=frame.text, end_call=frame.end_call,
                                                         transfer_to=frame.transfer_to))
        elif isinstance(frame, InterruptionFrame):
            await self._cancel_answer()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            if self._answer_task is not None:
                await self._answer_task  # let the last reply reach the speaker before ending
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _start_turn(self, turn: CallerTurn) -> None:
        await self._cancel_answer()
        record = self.session.turn(turn.index)
        # The acknowledgement timer runs from the turn decision, so a slow handler (a CRM
        # lookup) is covered as well as a slow LLM.
        self._ack_task = self.create_task(self._acknowledge_if_late(turn.index),
                                          name=f"{self.session.call_id}-ack-{turn.index}")
        try:
            reply = await self.session.handler.handle_turn(turn)
        except Exception as error:  # noqa: BLE001
            # a failing handler must not end the call silently
            # a failing turn manager must not leave the caller in silence
            logger.exception(f"{self.session.call_id}: turn handler failed: {error}")
            reply = Reply(text="Sorry, something went wrong on our side. Could you say that "
                               "again?")
        if reply is None:
            record.times.first_text = time.perf_counter()
            self.session.turn_done(turn.index)
            return
        record.nlu_ms = reply.nlu_ms
        await self._expect_after(reply)
        self._start_answer(turn.index, reply)

    async def _expect_after(self, reply: Reply) -> None:
        """Tell listen what the caller's next input is read as (an upstream frame)."""
        await self.push_frame(ExpectFrame.after(reply), FrameDirection.UPSTREAM)

    def _start_answer(self, turn_index: int, reply: Reply) -> None:
        self._reply_ids += 1
        reply_id = self._reply_ids
        self.session.reply_started(reply_id)
        self._answer_task = self.create_task(
            self._answer(reply_id, turn_index, reply),
            name=f"{self.session.call_id}-reply-{reply_id}")

    async def _answer(self, reply_id: int, turn_index: int, reply: Reply) -> None:
        record = self.session.turn(turn_index) if turn_index else None
        said: list[str] = []
        self.replies[reply_id] = ""
        try:
            async for piece in self._reply_text(reply, record):
                if record is not None and record.times.first_text is None:
                    record.times.first_text = time.perf_counter()
                said.append(piece)
                self.replies[reply_id] = "".join(said)
                await self.push_frame(ReplyTextFrame(reply_id, turn_index, piece))
        except Exception as error:  # noqa: BLE001
            logger.exception(f"{self.session.call_id}: turn handler failed: {error}")
            if not said:
                said.append("Sorry, something went wrong on our side.")
                await self.push_frame(ReplyTextFrame(reply_id, turn_index, said[0]))
        finally:
            if record is not None:
                record.reply_text = "".join(said).strip()
                if record.times.first_text is None:  # cancelled before a word: record it as is
                    self.session.turn_done(turn_index)
        await self.push_frame(ReplyTextFrame(reply_id, turn_index, "", last=True))
        if reply.end_call:
            self.session.hangup_after_reply = reply_id
        if reply.transfer_to:
            self.session.transfer_after_reply = (reply_id, reply.transfer_to)

    async def _reply_text(self, reply: Reply, record) -> AsyncIterator[str]:
        """The reply's text; a stream whose first piece misses the budget is replaced."""
        if reply.text is not None:
            yield reply.text
            return
        stream = reply.stream
        budget_s = self.session.settings.budget.turn_manager_ms / 1000
        try:
            first = await asyncio.wait_for(anext(stream), timeout=budget_s)
        except (TimeoutError, StopAsyncIteration) as late:
            await stream.aclose()
            if isinstance(late, StopAsyncIteration) and not reply.fallback_text:
                return
            if record is not None:
                record.ladder.append(LadderStep.TEMPLATE.value)
            yield reply.fallback_text or "Sorry, could you say that again?"
            return
        yield first
        async for piece in stream:
            yield piece

    async def _acknowledge_if_late(self, turn_index: int) -> None:
        """Ladder step 'acknowledge': no reply audio yet, long after the turn was decided."""
        record = self.session.turn(turn_index)
        budget = self.session.settings.budget
        confirmed = record.times.confirmed or time.perf_counter()
        await asyncio.sleep(max(0.0, confirmed + budget.acknowledge_after_ms / 1000
                                - time.perf_counter()))
        if record.times.first_sample is None and record.times.tts_first_audio is None:
            record.ladder.append(LadderStep.ACKNOWLEDGE.value)
            self._reply_ids += 1
            text = self.session.settings.tts.acknowledgement
            await self.push_frame(ReplyTextFrame(self._reply_ids, -turn_index, text))
            await self.push_frame(ReplyTextFrame(self._reply_ids, -turn_index, "", last=True))

    async def _resume(self, reply_id: int) -> None:
        """Say again, from the interrupted sentence, a reply cut by noise or a backchannel."""
        interrupted = self.session.last_interrupted
        text = self.replies.get(reply_id, "")
        if interrupted is None or not text:
            return
        sentences = split_sentences(text)
        start = next((i for i, s in enumerate(sentences) if s == interrupted.sentence), 0)
        rest = " ".join(sentences[start:])
        logger.info(f"{self.session.call_id}: resuming reply {reply_id} from {rest[:40]!r}")
        self.session.last_interrupted = None
        self._start_answer(0, Reply(text=rest))  # turn 0: the turn's record keeps its reply

    async def _cancel_answer(self) -> None:
        for task in (self._answer_task, self._ack_task):
            if task is not None and not task.done():
                await self.cancel_task(task)
        self._answer_task = self._ack_task = None
