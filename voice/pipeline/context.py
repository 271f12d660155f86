"""What the pipeline's stages may use of their call: the ``CallContext`` protocol.

The stages (listen, respond, speak, playout) are pipecat processors; they talk to each other in
frames. What they share with the call (its settings and models, the turn records, the playout
buffer, the handler) is this protocol, which ``CallSession`` implements; the stages never import
the session, so the session can build them without an import cycle.
"""

from __future__ import annotations

from typing import Any, Protocol

from intents.dialogue.turns import CallInfo, TurnHandler
from voice.app.settings import IvrSettings
from voice.asr import Transcript
from voice.pipeline.playout import Interrupted, PlayoutBuffer
from voice.pipeline.records import TurnRecord
from voice.pipeline.speculation import SpeculativeReply


class CallContext(Protocol):
    settings: IvrSettings
    call_id: str
    call_info: CallInfo
    handler: TurnHandler
    transport_rate: int
    fast: bool  # faster than real time (a recording, not a caller)
    silero_session: Any
    playout: PlayoutBuffer
    speculation: SpeculativeReply
    last_interrupted: Interrupted | None
    hangup_after_reply: int | None  # hang up once this reply has been heard
    transfer_after_reply: tuple[int, str] | None  # (reply id, queue) to transfer after

    @property
    def bot_speaking(self) -> bool: ...

    # models
    async def transcribe(self, audio16: Any, hint: str | None = None) -> Transcript: ...
    async def synthesize(self, text: str) -> bytes: ...
    def downgrade_asr(self) -> None: ...

    # turn records
    def add_turn(self, record: TurnRecord) -> None: ...
    def turn(self, index: int) -> TurnRecord: ...
    def turn_done(self, index: int) -> None: ...

    # progress
    def on_caller_frame_processed(self) -> None: ...
    def reply_started(self, reply_id: int) -> None: ...
    def reply_synthesized(self, reply_id: int) -> None: ...
    def on_interrupted(self, interrupted: Interrupted | None, unheard: set[int]) -> None: ...
