"""Frames of our own that flow through the pipecat pipeline, beside pipecat's."""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.frames.frames import DataFrame, OutputAudioRawFrame, SystemFrame

from intents.dialogue.turns import CallerTurn, Expect, Reply
from intents.redaction import SECRET_SLOT_KEY


@dataclass
class CallerTurnFrame(DataFrame):
    """A confirmed caller turn with its transcript (listen stage -> respond stage)."""

    turn: CallerTurn


@dataclass
class ReplyTextFrame(DataFrame):
    """A piece of reply text for one turn (respond stage -> speak stage); ``last`` closes it."""

    reply_id: int
    turn_index: int
    text: str
    last: bool = False


@dataclass
class ReplyAudioFrame(OutputAudioRawFrame):
    """Synthesized reply audio at the transport rate (speak stage -> playout)."""

    reply_id: int = 0
    turn_index: int = 0
    sentence: str = ""
    last: bool = False  # the final chunk of the reply


@dataclass
class ResumeReplyFrame(SystemFrame):
    """The barge-in was noise or a backchannel: say the interrupted reply again, from the
    sentence it was cut in."""

    reply_id: int


@dataclass
class SayFrame(DataFrame):
    """Something the IVR says on its own, outside a caller turn (a goodbye, a hold message)."""

    text: str
    end_call: bool = False  # hang up once it has been played
    transfer_to: str | None = None  # hand the caller to this human queue once played


@dataclass
class ExpectFrame(SystemFrame):
    """What the dialogue expects the caller to say next (respond stage -> listen, upstream):
    digits wait longer at the end of a turn; a keypad-only secret pauses ASR."""

    expect: Expect = Expect.ANYTHING
    secret_slot: str | None = None  # the secret the flow is collecting, if any
    expect_length: int | None = None  # digits in the expected value (an order number's length)

    @classmethod
    def after(cls, reply: Reply) -> ExpectFrame:
        slot = reply.metadata.get(SECRET_SLOT_KEY)
        return cls(expect=reply.expect, secret_slot=slot if isinstance(slot, str) else None,
                   expect_length=reply.expect_length)
