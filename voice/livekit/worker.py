"""The LiveKit Agents worker: one ``IvrAgent`` per room (per SIP call).

``python -m voice.livekit start`` registers with the LiveKit server named by LIVEKIT_URL,
LIVEKIT_API_KEY and LIVEKIT_API_SECRET (LiveKit's own variables) and waits for dispatch under
``livekit.agent_name``; ``dev`` and the other subcommands are livekit-agents' own CLI. The IVR's
settings file is read from IVR_CONFIG (the usual IVR_* variables override it).

The models load once per process in the set-up hook; with ``livekit.thread_jobs`` (the default)
every call of the worker runs in that process and shares them.
"""

from __future__ import annotations

import asyncio
import logging
import os

from livekit import api, rtc
from livekit.agents import AgentServer, JobContext, JobExecutorType, JobProcess, cli, inference
from livekit.agents.voice import room_io

from intents.dialogue.turns import CallInfo
from intents.redaction import redact
from voice.app.settings import IvrSettings
from voice.livekit.agent import IvrAgent, ivr_session

log = logging.getLogger(__name__)


def load_settings() -> IvrSettings:
    return IvrSettings.load(os.environ.get("IVR_CONFIG") or None)


def call_info(room: str, participant: rtc.RemoteParticipant) -> CallInfo:
    """The call as the turn manager sees it; LiveKit SIP puts the numbers in attributes."""
    attributes = participant.attributes
    return CallInfo(call_id=attributes.get("sip.callID") or room,
                    caller_number=attributes.get("sip.phoneNumber") or None,
                    called_number=attributes.get("sip.trunkPhoneNumber") or None)


class LiveKitCallActions:
    """Hang-up and transfer through LiveKit's server API (``CallActions``)."""

    def __init__(self, ctx: JobContext, participant: str, transfer_to: dict[str, str]) -> None:
        self.ctx = ctx
        self.participant = participant
        self.transfer_to = transfer_to

    async def transfer(self, queue: str) -> None:
        target = self.transfer_to.get(queue)
        if target is None:
            log.error("no livekit.transfer_to entry for queue %r: ending the call", queue)
            await self.hang_up()
            return
        await self.ctx.api.sip.transfer_sip_participant(api.TransferSIPParticipantRequest(
            room_name=self.ctx.room.name, participant_identity=self.participant,
            transfer_to=target, play_dialtone=False))

    async def hang_up(self) -> None:
        await self.ctx.api.room.delete_room(api.DeleteRoomRequest(room=self.ctx.room.name))


def prewarm(proc: JobProcess) -> None:
    """Load the models and the turn manager's parts once per worker process."""
    from voice.app.handlers import HandlerFactory
    from voice.engines import shared_engines

    settings = load_settings()
    proc.userdata["settings"] = settings
    proc.userdata["engines"] = shared_engines(settings)
    proc.userdata["handlers"] = HandlerFactory(settings)
    proc.userdata["vad"] = inference.VAD()  # Silero, shipped with livekit-agents


async def entrypoint(ctx: JobContext) -> None:
    data = ctx.proc.userdata
    settings: IvrSettings = data["settings"]
    await ctx.connect()
    participant = await ctx.wait_for_participant()
    actions = LiveKitCallActions(ctx, participant.identity, settings.livekit.transfer_to)
    agent = IvrAgent(data["handlers"].new(), call_info(ctx.room.name, participant), actions)
    session = ivr_session(data["engines"], data["vad"])

    keys: set[asyncio.Task] = set()

    @ctx.room.on("sip_dtmf_received")
    def _on_dtmf(event: rtc.SipDTMF) -> None:  # one key per event, answered in order
        task = asyncio.create_task(agent.handle_dtmf(event.digit))
        keys.add(task)
        task.add_done_callback(keys.discard)
        task.add_done_callback(_log_failure)

    # The caller's words stay in this process: no session recording upload, no transcription
    # published to the room (the SIP caller cannot read it; anyone else in the room could).
    await session.start(agent=agent, room=ctx.room, record=False,
                        room_options=room_io.RoomOptions(text_input=False, text_output=False,
                                                         delete_room_on_close=True))


class RedactPii(logging.Filter):
    """LiveKit marks what callers said in its log records (``lk.pii.*`` extras); a card number
    or a password said aloud must not reach a log in clear, so those values are redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in list(vars(record).items()):
            if key.startswith("lk.pii.") and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("keyed digit not handled", exc_info=task.exception())


def server(settings: IvrSettings | None = None) -> AgentServer:
    settings = settings or load_settings()
    executor = JobExecutorType.THREAD if settings.livekit.thread_jobs else JobExecutorType.PROCESS
    agent_server = AgentServer(setup_fnc=prewarm, job_executor_type=executor)
    agent_server.rtc_session(entrypoint, agent_name=settings.livekit.agent_name)
    return agent_server


def main() -> None:
    logging.getLogger("livekit.agents").addFilter(RedactPii())
    cli.run_app(server())
