"""The pipecat processors of one call, in pipeline order: listen, respond, speak, playout."""

from voice.pipeline.stages.listen import ListenStage
from voice.pipeline.stages.playout import PlayoutStage
from voice.pipeline.stages.respond import RespondStage
from voice.pipeline.stages.speak import SpeakStage

__all__ = ["ListenStage", "RespondStage", "SpeakStage", "PlayoutStage"]
