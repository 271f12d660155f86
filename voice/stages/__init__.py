"""The pipecat processors of one call, in pipeline order: listen, respond, speak, playout."""

from voice.stages.listen import ListenStage
from voice.stages.playout import PlayoutStage
from voice.stages.respond import RespondStage
from voice.stages.speak import SpeakStage

__all__ = ["ListenStage", "RespondStage", "SpeakStage", "PlayoutStage"]
