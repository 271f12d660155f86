"""The IVR as a LiveKit ``Agent``: the turn manager answers, Whisper hears, Piper speaks.

``IvrAgent`` greets with the turn manager's greeting when it enters, forwards keyed digits to it,
and carries out what a reply asks for once that reply has been heard: hang up, or hand the
caller to a human queue. Those two need the LiveKit server (the SIP participant, the room), so
they go through ``CallActions``; the worker (``voice.livekit.worker``) implements them with
LiveKit's server API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from livekit.agents import Agent, AgentSession, inference, llm, vad
from livekit.agents.voice import SpeechHandle

from intents.dialogue.turns import CallInfo, Reply, TurnHandler
from voice.app.settings import TurnSettings
from voice.engines import VoiceEngines
from voice.livekit.llm import TurnManagerLLM
from voice.livekit.stt import WhisperSTT
from voice.livekit.tts import PiperTTS
from voice.livekit.turns import ValueTurnDetector, min_delay_s

log = logging.getLogger(__name__)
VAD_SILENCE_S = 0.25  # LiveKit's VAD declares the end of speech after this much silence
INSTRUCTIONS = ("Replies come from the IVR's turn manager (menu flows and CRM tools); these "
                "instructions reach no model.")


class CallActions(Protocol):
    """What only the LiveKit server can do to the call."""

    async def transfer(self, queue: str) -> None:
        """Hand the caller to the human ``queue`` (LiveKit SIP: a REFER to the queue's URI)."""

    async def hang_up(self) -> None:
        """End the call."""


class IvrAgent(Agent):
    """One call's agent over its ``TurnManagerLLM``."""

    def __init__(self, handler: TurnHandler, call: CallInfo, actions: CallActions | None = None,
                 tools: list[llm.Tool] | None = None,
                 turn_settings: TurnSettings | None = None) -> None:
        self.turns = TurnManagerLLM(handler, call, on_reply=self._on_reply)
        self.turn_detector = ValueTurnDetector(
            turn_settings or TurnSettings(), lambda: self.turns.expecting,
            self._set_max_delay, VAD_SILENCE_S)
        super().__init__(instructions=INSTRUCTIONS, llm=self.turns, tools=tools,
                         turn_handling={"turn_detection": self.turn_detector})
        self.actions = actions
        self.done: list[tuple[str, str | None]] = []  # ("transfer", queue) / ("hang-up", None)
        self._tasks: set[asyncio.Task] = set()
        self._said: SpeechHandle | None = None

    def _set_max_delay(self, seconds: float) -> None:
        self.session.update_options(endpointing_opts={"max_delay": seconds})

    async def on_enter(self) -> None:
        greeting = await self.turns.start()
        if greeting is not None:
            self._say(greeting)

    async def handle_dtmf(self, digits: str) -> SpeechHandle | None:
        """Keyed digits, one event at a time, as the SIP path delivers them."""
        reply = await self.turns.dtmf(digits)
        return self._say(reply) if reply is not None else None

    def _say(self, reply: Reply) -> SpeechHandle:
        self._said = self.session.say(reply.text if reply.text is not None else reply.stream)
        self._act_after(reply, self._said)
        return self._said

    def _on_reply(self, reply: Reply) -> None:
        """A turn's reply, produced inside the session's LLM node: it becomes the current
        speech, whose playout the follow-up waits for."""
        self._act_after(reply, None)

    def _act_after(self, reply: Reply, handle: SpeechHandle | None) -> None:
        if not (reply.end_call or reply.transfer_to):
            return
        task = asyncio.create_task(self._after_playout(reply, handle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_playout(self, reply: Reply, handle: SpeechHandle | None) -> None:
        if handle is None:
            await asyncio.sleep(0)  # let the session schedule the speech this reply is part of
            handle = self.session.current_speech
        if handle is not None:
            await handle.wait_for_playout()
        if reply.transfer_to:
            self.done.append(("transfer", reply.transfer_to))
            if self.actions is not None:
                await self.actions.transfer(reply.transfer_to)
        elif reply.end_call:
            self.done.append(("hang-up", None))
            if self.actions is not None:
                await self.actions.hang_up()

    async def on_exit(self) -> None:
        await self.turns.end("session-ended")


def ivr_session(engines: VoiceEngines, vad_model: vad.VAD | None = None) -> AgentSession:
    """An ``AgentSession`` with our STT and TTS (the agent brings the turn manager).

    The VAD (default: LiveKit's bundled Silero, ``inference.VAD``) cuts the room's audio into
    speech for Whisper; ``IvrAgent``'s ``ValueTurnDetector`` decides when a turn has ended.

    Preemptive generation is off: LiveKit would otherwise ask the LLM for a reply before the
    turn is confirmed and may discard it, and the turn manager's flow state (a slot heard, a
    read-back asked) must advance once per real caller turn.
    """
    turn = engines.settings.turn
    return AgentSession(
        stt=WhisperSTT(engines), tts=PiperTTS(engines),
        vad=vad_model if vad_model is not None else inference.VAD(
            min_silence_duration=VAD_SILENCE_S),
        # LiveKit ignores the user for the first 3 s of agent speech while a loudspeaker echo
        # canceller warms up; a caller on a phone line speaks over the greeting at once, and the
        # SIP path lets them (barge-in), so this one does too.
        aec_warmup_duration=None,
        turn_handling={"turn_detection": "vad", "interruption": {"mode": "vad"},
                       "endpointing": {"mode": "fixed",
                                       "min_delay": min_delay_s(turn, VAD_SILENCE_S)},
                       "preemptive_generation": {"enabled": False}})
