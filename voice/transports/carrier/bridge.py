"""Warm transfer of a stream caller to a SIP agent, through our PJSIP side.

The agent is dialled, rung and briefed exactly as for a SIP caller (``SipAgentLine``). Only the
connection differs: a SIP caller's two legs are joined on PJSIP's conference bridge, but a stream
caller has no PJSIP leg, so the IVR stays in the media path and carries the audio itself:

    caller --WS μ-law 8 kHz--> StreamLine --resample--> agent's BridgePort.source
                                                      (PJSIP's clock) --RTP--> agent
    agent --RTP--> BridgePort inbox --resample--> the line's 20 ms clock --WS--> caller

REFER cannot apply (there is no SIP dialog with the caller). Handing the call to the agent
through the carrier's own API instead (Twilio: update the call with new TwiML ``<Dial><Sip>``;
Telnyx: the Call Control ``transfer`` command) would take the IVR out of the path, but needs the
account's REST credentials and the carrier's cloud, so it is not built or claimed here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from loguru import logger

from voice.audio import StreamResampler

if TYPE_CHECKING:
    from voice.transports.sip.line import SipAgentLeg, SipAgentLine
    from voice.transports.sip.media import BridgePort


class StreamCaller(Protocol):
    """What the bridge needs of a stream line (``StreamLine``)."""

    name: str
    rate: int
    frame_bytes: int
    on_caller_frame: Callable[[bytes], None] | None
    bridge: Any

    def play_from(self, source: Callable[[], bytes | None] | None) -> None: ...

QUEUE_FRAMES = 25  # 500 ms each way; beyond it the oldest frames are dropped (clock drift)


class AgentBridge:
    """Audio both ways between a stream caller and an agent's PJSIP leg, until either ends."""

    def __init__(self, line: StreamCaller, port: BridgePort) -> None:
        self.line = line
        self.port = port
        self._to_agent: deque[bytes] = deque(maxlen=QUEUE_FRAMES)
        self._to_caller: deque[bytes] = deque(maxlen=QUEUE_FRAMES)
        self._up = StreamResampler(line.rate, port.rate)
        self._down = StreamResampler(port.rate, line.rate)
        self._up_pending = bytearray()  # resampled audio not yet a whole frame
        self._down_pending = bytearray()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.port.source = self._agent_frame  # PJSIP's clock takes the caller's audio
        self.line.play_from(self._caller_frame)  # the line's clock takes the agent's
        self.line.on_caller_frame = self._from_caller
        self._task = asyncio.create_task(self._from_agent(), name=f"{self.line.name}-agent")

    def stop(self) -> None:
        self.line.on_caller_frame = None
        if self._task is not None:
            self._task.cancel()

    # -- caller -> agent (asyncio in, PJSIP's thread out: a deque is safe across the two) ----------

    def _from_caller(self, pcm: bytes) -> None:
        self._up_pending += self._up.process(np.frombuffer(pcm, dtype=np.int16)).tobytes()
        _frames(self._up_pending, self.port.frame_bytes, self._to_agent)

    def _agent_frame(self) -> bytes | None:
        try:
            pcm = self._to_agent.popleft()
        except IndexError:
            return None
        return pcm if len(pcm) == self.port.frame_bytes else None

    # -- agent -> caller ---------------------------------------------------------------------------

    async def _from_agent(self) -> None:
        try:
            while True:
                for pcm in await self.port.receive():
                    narrow = self._down.process(np.frombuffer(pcm, dtype=np.int16))
                    self._down_pending += narrow.tobytes()
                    _frames(self._down_pending, self.line.frame_bytes, self._to_caller)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the call goes on; the agent is lost
            logger.warning(f"{self.line.name}: agent audio stopped: {error}")

    def _caller_frame(self) -> bytes | None:
        try:
            return self._to_caller.popleft()
        except IndexError:
            return None


def _frames(pending: bytearray, size: int, out: deque[bytes]) -> None:
    """Move whole frames of ``size`` bytes from ``pending`` to ``out`` (the resamplers return
    what their filters have, not one frame per frame)."""
    while len(pending) >= size:
        out.append(bytes(pending[:size]))
        del pending[:size]


class StreamAgentLine:
    """``handoff.transfer.AgentLine`` for stream callers: SIP agents, bridged in software."""

    def __init__(self, sip: SipAgentLine) -> None:
        self.sip = sip

    async def dial(self, uri: str, headers: dict[str, str]) -> SipAgentLeg:
        return await self.sip.dial(uri, headers)

    async def bridge(self, caller: StreamCaller, agent: SipAgentLeg) -> None:
        port = agent.leg.port
        if port is None:
            raise RuntimeError("the agent's leg has no audio")
        bridge = AgentBridge(caller, port)
        bridge.start()
        caller.bridge = bridge
        logger.info(f"{caller.name}: bridged to the agent through the IVR "
                    f"({caller.rate} Hz stream <-> {port.rate} Hz PJSIP port)")

    async def refer(self, caller: StreamCaller, agent: SipAgentLeg, timeout_s: float) -> bool:
        """No SIP dialog with a stream caller to REFER: always bridged."""
        return False
