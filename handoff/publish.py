"""Where a handoff goes once the decision is taken: the store, the agent desktop, the webhooks,
and, when the call is over, the after-call record in the CRM.

Transport-free: the warm transfer (``handoff.transfer``) calls it, and so could any other path
that hands a caller over (a callback booked, a queue a contact-centre platform owns).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from handoff.aftercall import disposition_for, write_after_call
from handoff.build import build_package
from handoff.crm import CrmStore
from handoff.desktop import DesktopHub
from handoff.package import TranscriptLine
from handoff.settings import HandoffSettings
from handoff.store import HandoffStore
from handoff.summary import LlmSummarizer, spoken_summary
from handoff.webhooks import WebhookPusher
from intents.dialogue.state import CallState


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class CallFacts:
    """What the package says of the call itself (from the transport's record)."""

    call_id: str
    external_id: str | None
    caller_number: str | None
    called_number: str | None
    started_at: float


@dataclass(frozen=True)
class Published:
    handoff_id: str
    summary: str  # as the agent reads it
    briefing: str  # as the agent hears it (numbers and dates written to be spoken)


class HandoffPublisher:
    """One per process: builds, stores, shows and pushes packages; settles their outcome."""

    def __init__(self, settings: HandoffSettings, store: HandoffStore, crm: CrmStore, *,
                 hub: DesktopHub | None = None, pusher: WebhookPusher | None = None,
                 summarizer: LlmSummarizer | None = None) -> None:
        self.settings = settings
        self.store = store
        self.crm = crm
        self.hub = hub
        self.pusher = pusher
        self.summarizer = summarizer
        self._tasks: set[asyncio.Task] = set()  # webhook pushes in flight, kept referenced

    async def publish(self, state: CallState, transcript: list[TranscriptLine],
                      facts: CallFacts) -> Published:
        """Build the package from the call state and the CRM, store it, push it; CRM and store
        I/O run in threads (the event loop carries every call's audio)."""
        package = await asyncio.to_thread(
            build_package, state, self.crm, transcript, sip_call_id=facts.external_id,
            called_number=facts.called_number, started_at=iso(facts.started_at))
        if self.summarizer is not None:  # a capable LLM may rewrite it, from the same facts only
            rewrite = await self.summarizer.apply(package)
            logger.info(f"call {facts.call_id}: LLM summary "
                        f"{'accepted' if rewrite.accepted else 'rejected'}")
        data = package.to_dict()
        await asyncio.to_thread(self.store.save, package)
        logger.info(f"call {facts.call_id}: handoff {data['handoff_id']} to {state.route!r} "
                    f"({state.escalation_reason})")
        if self.hub is not None:
            await self.hub.publish(data)
        if self.pusher is not None and self.pusher.urls:
            task = self.pusher.push_in_background(data)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Published(data["handoff_id"], data["summary"], self._briefing(data))

    @staticmethod
    def _briefing(data: dict[str, Any]) -> str:
        try:
            return spoken_summary(data["summary"])
        except Exception as error:  # noqa: BLE001 - the written summary still briefs the agent
            logger.warning(f"handoff {data['handoff_id']}: spoken summary: {error}")
            return data["summary"]

    async def set_outcome(self, handoff_id: str, outcome: str, agent_uri: str | None = None,
                          attempt: str | None = None) -> None:
        try:
            await asyncio.to_thread(self.store.update_transfer, handoff_id, outcome,
                                    agent_uri=agent_uri, attempt_result=attempt)
        except Exception as error:  # noqa: BLE001 - recorded in the log; the call goes on
            logger.error(f"handoff {handoff_id}: transfer update failed: {error}")
        if self.hub is not None:
            try:
                await self.hub.update(handoff_id, outcome)
            except (KeyError, ValueError) as error:
                logger.warning(f"handoff {handoff_id}: desktop update: {error}")

    async def after_call(self, *, call_id: str, handoff_id: str, outcome: str, summary: str,
                         state: CallState) -> dict[str, str] | None:
        """The after-call record in the CRM case; what the call record notes of it."""
        try:
            record = await asyncio.to_thread(
                write_after_call, self.crm, call_id=call_id, customer_id=state.customer_id,
                disposition=disposition_for(outcome), summary=summary, handoff_id=handoff_id,
                subject=f"Phone call: {state.route or 'transfer'}")
        except Exception as error:  # noqa: BLE001
            logger.error(f"call {call_id}: after-call record failed: {error}")
            return None
        return {"case_id": record.case_id, "disposition": str(record.disposition)}

    async def schedule_callback(self, number: str, customer_id: int | None) -> None:
        await asyncio.to_thread(self.crm.schedule_callback, number, "next business hours",
                                customer_id)
