"""The IVR's pieces as LiveKit Agents plugins, for a deployment that scales on LiveKit
(LiveKit SIP and worker dispatch) instead of PJSIP behind Kamailio.

- ``WhisperSTT``: our faster-whisper, the encoder window sized to the turn;
- ``PiperTTS``: Piper, sentence by sentence;
- ``TurnManagerLLM`` / ``IvrAgent``: the turn manager (flows, CRM tools, escalation) as the
  agent's LLM, and ``crm_function_tools`` for an agent on a general LLM;
- ``ValueTurnDetector``: the SIP path's value-aware end of turn as LiveKit's turn detector;
- ``voice.livekit.worker``: the worker entrypoint (``python -m voice.livekit``).

Importing this package needs ``livekit-agents``; nothing else in the IVR imports it.
"""

from voice.livekit.agent import CallActions, IvrAgent, ivr_session
from voice.livekit.llm import TurnManagerLLM
from voice.livekit.stt import WhisperSTT, streaming_whisper
from voice.livekit.tools import crm_function_tools
from voice.livekit.tts import PiperTTS
from voice.livekit.turns import ValueTurnDetector

__all__ = ["CallActions", "IvrAgent", "PiperTTS", "TurnManagerLLM", "ValueTurnDetector",
           "WhisperSTT", "crm_function_tools", "ivr_session", "streaming_whisper"]
