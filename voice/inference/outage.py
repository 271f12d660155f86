"""One call's side of an inference tier outage: wait for it, say so, and never leave the caller
in silence.

When a request finds the tier unreachable, the call says the budget's acknowledgement ("One
moment.") and waits for the channel to reconnect, up to ``inference.outage_s``; the request is
then made again and the turn goes on, its record marked ``inference_wait``. If the tier stays
down, the caller hears ``inference.outage_message`` (audio kept in the worker) and is handed to
``inference.outage_queue``; the call record says what happened either way. The acknowledgement
is said only for ASR: a reply whose synthesis waits is already the turn's answer, and the
acknowledgement would cut it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from loguru import logger

from voice.app.settings import IvrSettings
from voice.inference.client import InferenceUnavailable

T = TypeVar("T")
POLL_S = 0.2  # how often a waiting request looks at the channel and at the caller
WAIT_STEP = "inference_wait"  # the ladder step a turn that waited for the tier is marked with


class OutageLine(Protocol):
    """What the outage needs of the call (``CallSession``)."""

    call_id: str

    @property
    def caller_speaking(self) -> bool: ...

    async def say_now(self, text: str, *, transfer_to: str | None = None) -> None: ...

    def note_ladder(self, step: str) -> None: ...


@dataclass
class OutageEvent:
    """One outage as the call record keeps it."""

    kind: str  # "recovered" or "down"
    stage: str  # "asr" or "tts"
    waited_s: float
    error: str
    acknowledged: bool

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "stage": self.stage, "waited_s": round(self.waited_s, 2),
                "error": self.error, "acknowledged": self.acknowledged}


class TierOutage:
    """Wraps a call's model requests; ``events`` is what the call record gets."""

    def __init__(self, line: OutageLine, engines: Any, settings: IvrSettings) -> None:
        self.line = line
        self.engines = engines
        self.settings = settings
        self.events: list[OutageEvent] = []
        self.gave_up = False
        self._since: float | None = None  # the outage this call is waiting out, shared by
        self._acknowledged = False  # concurrent requests (a speculative ASR and the final one)

    async def run(self, stage: str, work: Callable[[], Awaitable[T]]) -> T | None:
        """``work()``'s result, waiting out an outage; None once the caller has been handed
        over (the tier stayed down)."""
        try:
            return await work()
        except InferenceUnavailable as error:
            first_error = str(error)
        if self.gave_up:
            return None  # already told and handed over; do not wait again
        if self._since is None:
            self._since, self._acknowledged = time.monotonic(), False
            logger.warning(f"{self.line.call_id}: {first_error}; waiting up to "
                           f"{self.settings.inference.outage_s:g} s")
        deadline = self._since + self.settings.inference.outage_s
        while (left := deadline - time.monotonic()) > 0:
            await self._acknowledge(stage)
            if not await self.engines.wait_ready(min(left, POLL_S)):
                continue
            try:
                result = await work()
            except InferenceUnavailable as error:
                first_error = str(error)
                continue
            self._recovered(stage, first_error)
            return result
        await self._give_up(stage, first_error)
        return None

    @property
    def waiting(self) -> bool:
        """A request of this call is waiting for the tier (the call is not idle)."""
        return self._since is not None

    async def _acknowledge(self, stage: str) -> None:
        """'One moment.' once per outage, when the caller's turn is over: an ASR request at a
        pause inside the turn waits silently while the caller goes on talking."""
        if stage == "asr" and not self._acknowledged and not self.line.caller_speaking:
            self._acknowledged = True
            await self.line.say_now(self.settings.tts.acknowledgement)

    def _recovered(self, stage: str, error: str) -> None:
        if self._since is None:  # a concurrent request already recorded this outage
            return
        waited = time.monotonic() - self._since
        self.events.append(OutageEvent("recovered", stage, waited, error, self._acknowledged))
        self._since = None
        self.line.note_ladder(WAIT_STEP)
        logger.info(f"{self.line.call_id}: inference tier back after {waited:.1f} s")

    async def _give_up(self, stage: str, error: str) -> None:
        if self.gave_up:
            return
        self.gave_up = True
        waited = time.monotonic() - (self._since or time.monotonic())
        self.events.append(OutageEvent("down", stage, waited, error, self._acknowledged))
        logger.error(f"{self.line.call_id}: inference tier down for {waited:.1f} s (past "
                     f"inference.outage_s): caller offered a human "
                     f"({self.settings.inference.outage_queue!r})")
        while self.line.caller_speaking:  # said over the caller, barge-in would cut it
            await asyncio.sleep(POLL_S)
        await self.line.say_now(self.settings.inference.outage_message,
                                transfer_to=self.settings.inference.outage_queue)

    def record(self) -> dict[str, Any] | None:
        """The call record's ``inference`` entry, or None when nothing happened."""
        if not self.events:
            return None
        entry: dict[str, Any] = {"outages": [e.to_dict() for e in self.events]}
        if self.gave_up:
            entry["error"] = (f"inference tier unreachable for more than "
                              f"{self.settings.inference.outage_s:g} s: caller told and "
                              f"offered a human ({self.settings.inference.outage_queue})")
        return entry
