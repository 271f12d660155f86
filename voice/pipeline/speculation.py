"""Speculative replies: the reply's first clause synthesized before the turn is confirmed.

At the early pause the turn's transcript already exists (ASR runs there speculatively), and the
end-of-turn rule then waits a little longer to be sure the caller has finished. That wait is
spent here: the turn handler is asked, without side effects, what it would answer
(``preview_turn``), and the opening clause of that answer goes to TTS.

Nothing speculative is ever played by itself. When the turn is confirmed the real handler runs as
usual; the speak stage asks :meth:`SpeculativeReply.claim` for each piece it is about to
synthesize and gets the prepared audio only when that piece is word for word the one prepared
for the same transcript. A caller who goes on talking, a transcript that changed, or a handler
that answered differently, discards it; the turn record says which (``speculation``,
``speculations_discarded``).

Why not pipecat's: pipecat has no speculative turn step (its turn analyzers decide, then the LLM
runs); LiveKit's preemptive generation does the same on its own pipeline, not on ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger

from intents.dialogue.turns import CallerTurn, TurnHandler
from voice.pipeline.clauses import spoken_pieces

Synthesize = Callable[[str], Awaitable[bytes | None]]


class SpeculationOutcome:
    USED = "used"  # the confirmed reply opened with the prepared clause: it played at once
    MISSED = "missed"  # the transcript stood but the handler's real reply opened otherwise


@dataclass
class _Prepared:
    turn_index: int
    piece: str
    audio: asyncio.Task[bytes | None]


class SpeculativeReply:
    """One call's speculation: at most one prepared clause, for the turn in progress."""

    def __init__(self, handler: TurnHandler, synthesize: Synthesize, call_id: str) -> None:
        self._preview = getattr(handler, "preview_turn", None)
        self._synthesize = synthesize
        self.call_id = call_id
        self._prepared: _Prepared | None = None
        self._previewing: asyncio.Task | None = None
        self._transcript: str | None = None  # what the speculation in progress is for
        self.discarded = 0  # speculations thrown away during the turn in progress

    @property
    def available(self) -> bool:
        """The handler can preview its answers (echo and the turn manager can)."""
        return self._preview is not None

    def start(self, turn: CallerTurn) -> None:
        """The early pause's transcript is in: prepare the answer's first clause."""
        if self._preview is None:
            return
        self.discard()
        self._transcript = turn.text
        self._previewing = asyncio.ensure_future(self._prepare(turn))

    async def _prepare(self, turn: CallerTurn) -> None:
        try:
            text = await self._preview(turn)
        except Exception as error:  # noqa: BLE001 - a preview is an optimisation, never a failure
            logger.debug(f"{self.call_id}: no speculative reply ({error!r})")
            return
        pieces = spoken_pieces(text or "")
        if not pieces:
            return
        audio = asyncio.ensure_future(self._synthesize(pieces[0]))
        self._prepared = _Prepared(turn.index, pieces[0], audio)

    def new_turn(self) -> None:
        """The caller started a new turn: whatever is left of the last one goes, uncounted."""
        self.close()
        self.discarded = 0

    def discard(self) -> None:
        """The caller went on, or the turn ended on another transcript: throw it away."""
        if self._prepared is not None or \
                (self._previewing is not None and not self._previewing.done()):
            self.discarded += 1
        self.close()

    def confirmed(self, transcript: str) -> int:
        """The turn was confirmed with ``transcript``; returns how many speculations this turn
        threw away (the count starts again for the next turn)."""
        if self._transcript is not None and self._transcript != transcript:
            self.discard()
        discarded, self.discarded = self.discarded, 0
        return discarded

    async def claim(self, piece: str, turn_index: int) -> tuple[bytes | None, str | None]:
        """The prepared audio for ``piece`` of turn ``turn_index``'s reply, if it was prepared;
        with the outcome to record (None: nothing was prepared for this turn)."""
        if self._previewing is not None and not self._previewing.done():
            try:  # the clause may still be on its way: wait for it rather than start again
                await asyncio.shield(self._previewing)
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise
        prepared = self._prepared
        if prepared is None or prepared.turn_index != turn_index:
            return None, None
        self._prepared = self._previewing = self._transcript = None
        if prepared.piece != piece:
            if not prepared.audio.done():
                prepared.audio.cancel()
            return None, SpeculationOutcome.MISSED
        try:
            audio = await prepared.audio
        except Exception as error:  # noqa: BLE001 - synthesize it the usual way instead
            logger.debug(f"{self.call_id}: speculative clause failed: {error!r}")
            return None, SpeculationOutcome.MISSED
        return audio or None, SpeculationOutcome.USED if audio else SpeculationOutcome.MISSED

    def close(self) -> None:
        """Cancel whatever is being prepared and forget it (uncounted)."""
        if self._previewing is not None and not self._previewing.done():
            self._previewing.cancel()
        if self._prepared is not None and not self._prepared.audio.done():
            self._prepared.audio.cancel()
        self._previewing = self._transcript = self._prepared = None
