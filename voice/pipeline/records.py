"""What one caller turn cost, stage by stage, and what the latency budget did about it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """The stages that partition the caller's wait (end of speech -> first reply sample)."""

    END_OF_TURN = "end_of_turn"
    ASR = "asr"
    NLU = "nlu"
    TURN_MANAGER = "turn_manager"
    TTS = "tts_first_audio"
    TRANSPORT = "transport"


class LadderStep(StrEnum):
    """Degradation ladder steps, in the order they act (see BudgetSettings)."""

    ACKNOWLEDGE = "acknowledge"  # a short spoken acknowledgement while work continues
    TEMPLATE = "template"  # the LLM was late: the turn manager's template reply was spoken
    SMALLER_ASR = "smaller_asr_model"  # repeated ASR overruns: the call switched ASR model
    OVERRUN = "overrun"  # a stage overran and no step could help; names the stage


@dataclass
class TurnTimes:
    """perf_counter() instants of one turn; the stages are differences of these."""

    speech_end: float | None = None
    asr_start: float | None = None
    asr_end: float | None = None
    confirmed: float | None = None
    first_text: float | None = None  # the turn manager's first text (LLM first token)
    tts_start: float | None = None  # the first clause complete and handed to TTS
    tts_first_audio: float | None = None
    first_sample: float | None = None


@dataclass
class TurnRecord:
    index: int
    caller_text: str = ""
    reply_text: str = ""
    speech_start_s: float = 0.0  # position in the caller's stream
    speech_end_s: float = 0.0
    times: TurnTimes = field(default_factory=TurnTimes)
    nlu_ms: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    total_ms: float | None = None
    ladder: list[str] = field(default_factory=list)
    barge_in: bool = False  # the caller's speech in this turn cut our previous reply
    reply_interrupted: bool = False  # our reply to this turn was cut by the caller
    reply_heard: str = ""  # the sentences of the reply the caller heard in full
    forced: bool = False  # cut at max_turn_s
    extra_wait_ms: float = 0.0  # silence the end-of-turn rule asked for beyond the usual wait
    # (a number read out in groups, a sentence trailing off): budgeted, not an overrun
    asr_dropped: str | None = None
    end_rule: str = ""  # the end-of-turn rule that set the wait (value-complete, smart-turn-...)
    smart_turn_p: float | None = None  # Smart Turn's P(complete) at the early pause, if asked
    smart_turn_ms: float | None = None  # what asking it took (queue wait included)
    speculation: str | None = None  # the prepared first clause was "used" or "missed"
    speculations_discarded: int = 0  # prepared during the turn, thrown away (the caller went on)

    def compute_stages(self, budget: Any) -> None:
        """Fill ``stages``, ``total_ms`` and ``ladder`` from the instants (all ms)."""
        t = self.times
        if None in (t.speech_end, t.asr_start, t.asr_end, t.confirmed):
            return
        ms = lambda a, b: max(0.0, (b - a) * 1000.0)  # noqa: E731
        self.stages = {
            Stage.END_OF_TURN: ms(t.speech_end, t.asr_start) + ms(t.asr_end, t.confirmed),
            Stage.ASR: ms(t.asr_start, t.asr_end),
        }
        # The turn manager's share runs until TTS can start: with a streaming LLM that is its
        # first complete clause, not its first token.
        text_ready = t.tts_start or t.first_text
        if text_ready is not None:
            manager = ms(t.confirmed, text_ready)
            self.stages[Stage.NLU] = min(self.nlu_ms, manager)
            self.stages[Stage.TURN_MANAGER] = manager - self.stages[Stage.NLU]
        if text_ready is not None and t.tts_first_audio is not None:
            self.stages[Stage.TTS] = ms(text_ready, t.tts_first_audio)
        if t.tts_first_audio is not None and t.first_sample is not None:
            self.stages[Stage.TRANSPORT] = ms(t.tts_first_audio, t.first_sample)
        self.stages = {str(k): round(v, 1) for k, v in self.stages.items()}
        if t.first_sample is not None:
            self.total_ms = round(ms(t.speech_end, t.first_sample), 1)
        limits = {Stage.END_OF_TURN: budget.end_of_turn_ms + self.extra_wait_ms,
                  Stage.ASR: budget.asr_ms,
                  Stage.NLU: budget.nlu_ms, Stage.TURN_MANAGER: budget.turn_manager_ms,
                  Stage.TTS: budget.tts_first_audio_ms, Stage.TRANSPORT: budget.transport_ms}
        acted = bool(self.ladder)
        for stage, limit in limits.items():
            if self.stages.get(str(stage), 0.0) > limit and not acted:
                self.ladder.append(f"{LadderStep.OVERRUN}:{stage}")
        if self.total_ms is not None and \
                self.total_ms > budget.total_ms + self.extra_wait_ms and not self.ladder:
            self.ladder.append(f"{LadderStep.OVERRUN}:total")

    @property
    def budget_status(self) -> str:
        return ",".join(self.ladder) if self.ladder else "ok"

    def to_dict(self) -> dict[str, Any]:
        reply = self.reply_text
        if self.reply_interrupted:
            reply = f"{self.reply_heard} [interrupted]".strip()
        return {
            "turn": self.index,
            "caller_text": self.caller_text,
            "reply_text": reply,
            "stages": self.stages,
            "total_ms": self.total_ms,
            "budget": self.budget_status,
            "barge_in": self.barge_in,
            "reply_interrupted": self.reply_interrupted,
            "full_reply_text": self.reply_text,
            "speech_start_s": round(self.speech_start_s, 3),
            "speech_end_s": round(self.speech_end_s, 3),
            **({"budgeted_wait_ms": round(self.extra_wait_ms, 1)} if self.extra_wait_ms else {}),
            **({"asr_dropped": self.asr_dropped} if self.asr_dropped else {}),
            **({"forced_turn_end": True} if self.forced else {}),
            **({"end_rule": self.end_rule} if self.end_rule else {}),
            **({"smart_turn_p": round(self.smart_turn_p, 3),
                "smart_turn_ms": round(self.smart_turn_ms or 0.0, 1)}
               if self.smart_turn_p is not None else {}),
            **({"speculation": self.speculation} if self.speculation else {}),
            **({"speculations_discarded": self.speculations_discarded}
               if self.speculations_discarded else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)
