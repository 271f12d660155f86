"""The baseline: a stock pipecat 1.14 pipeline fed a recorded caller in real time.

Built the way pipecat's own examples build a voice bot, with every setting at its default:
transport input -> ``WhisperSTTService`` -> user context aggregator with ``SileroVADAnalyzer``
(pipecat's default turn strategies: VAD to start, smart-turn v3 to stop) -> an echo "LLM" ->
``PiperTTSService`` -> transport output -> assistant aggregator.

Where it departs from pure defaults, and why (none of these changes its latency behaviour):
- Whisper is given the bundled tiny.en directory and CPU int8 (``model=``, ``device=``,
  ``compute_type=``): the default model name would be fetched from a hub, and there is no
  internet here. The same model and compute type as ours.
- Piper is given ``download_dir`` holding the bundled joe voice, for the same reason.
- The transport is the smallest pipecat ``BaseTransport`` that takes frames from a recording and
  plays the output on a real-time clock (pipecat has no file transport).
- The caller's 8 kHz audio enters the pipeline at 16 kHz, as pipecat's telephony serializers
  (Twilio, Telnyx) deliver it: pipecat's WhisperSTTService hands the buffer to Whisper without
  resampling, so an 8 kHz pipeline transcribes nothing (tried: no transcript at all).
- The echo "LLM" answers each user turn with "You said: <transcript>", as ours does in the bench.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    LLMContextFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.workers.runner import WorkerRunner

from voice.audio import read_audio, resample

_GAP_S = 0.1  # output silence longer than this starts a new reply


@dataclass
class BaselineRun:
    feed_start: float  # perf_counter() when the first 20 ms caller frame was pushed
    reply_onsets: list[float] = field(default_factory=list)  # first audio of each reply
    transcripts: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)


class RecordingInput(BaseInputTransport):
    """Caller audio pushed by the feeder, through pipecat's own input path."""

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)


class ClockedOutput(BaseOutputTransport):
    """Plays output on a real-time clock, like a sound card, and notes when each reply starts."""

    def __init__(self, params: TransportParams, run: BaselineRun) -> None:
        super().__init__(params)
        self.run = run
        self._play_until = 0.0

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        now = time.perf_counter()
        duration = len(frame.audio) / 2 / frame.sample_rate
        if now > self._play_until + _GAP_S:
            self.run.reply_onsets.append(now)
        self._play_until = max(self._play_until, now)
        await asyncio.sleep(max(0.0, self._play_until - now))
        self._play_until += duration
        return True


class RecordingTransport(BaseTransport):
    def __init__(self, params: TransportParams, run: BaselineRun) -> None:
        super().__init__()
        self._input = RecordingInput(params)
        self._output = ClockedOutput(params, run)

    def input(self) -> RecordingInput:
        return self._input

    def output(self) -> ClockedOutput:
        return self._output


class EchoLlm(FrameProcessor):
    """Answers each user turn with what was understood."""

    def __init__(self, run: BaselineRun) -> None:
        super().__init__(name="echo-llm")
        self.run = run

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            users = [m for m in frame.context.get_messages() if m.get("role") == "user"]
            if users:
                content = users[-1].get("content")
                text = content if isinstance(content, str) else " ".join(
                    part.get("text", "") for part in content or [] if isinstance(part, dict))
                self.run.transcripts.append(text.strip())
                reply = f"You said: {text.strip()}"
                self.run.replies.append(reply)
                await self.push_frame(TTSSpeakFrame(reply))
            return
        await self.push_frame(frame, direction)


async def run_stock_pipecat(wav_path: Path, *, whisper_model: str, piper_voice: Path,
                            tail_silence_s: float = 3.0) -> BaselineRun:
    """Play ``wav_path`` (mono 16-bit, its own rate) into the stock pipeline in real time."""
    chunk = read_audio(wav_path)
    out_rate = chunk.sample_rate  # replies go back at the caller's rate
    rate = 16000  # see the module docstring
    samples = resample(chunk.samples, chunk.sample_rate, rate)
    run = BaselineRun(feed_start=0.0)
    params = TransportParams(audio_in_enabled=True, audio_out_enabled=True,
                             audio_in_sample_rate=rate, audio_out_sample_rate=out_rate)
    transport = RecordingTransport(params, run)
    stt = WhisperSTTService(device="cpu", compute_type="int8",
                            settings=WhisperSTTService.Settings(model=whisper_model))
    voice_dir = Path(tempfile.mkdtemp(prefix="piper-voice-"))
    for suffix in (".onnx", ".onnx.json"):
        (voice_dir / f"{piper_voice.stem}{suffix}").symlink_to(f"{piper_voice}"[:-5] + suffix)
    tts = PiperTTSService(download_dir=voice_dir,
                          settings=PiperTTSService.Settings(voice=piper_voice.stem))
    aggregators = LLMContextAggregatorPair(
        LLMContext(), user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()))
    pipeline = Pipeline([stt, aggregators.user(), EchoLlm(run), tts,
                         transport.output(), aggregators.assistant()])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=rate,
                                                            audio_out_sample_rate=out_rate),
                            idle_timeout_secs=None, enable_rtvi=False)
    runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run(), name="stock-pipecat")

    frame = rate // 50
    audio = np.concatenate([samples, np.zeros(int(tail_silence_s * rate), np.int16)])
    run.feed_start = time.perf_counter()
    for i in range(len(audio) // frame):
        await asyncio.sleep(max(0.0, run.feed_start + i * 0.02 - time.perf_counter()))
        pcm = audio[i * frame:(i + 1) * frame].tobytes()
        await worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1))
    await worker.queue_frame(EndFrame())
    await running
    return run


if __name__ == "__main__":
    from models.registry import shared_registry

    registry = shared_registry()
    result = asyncio.run(run_stock_pipecat(Path(sys.argv[1]),
                                           whisper_model=str(registry.whisper_path("tiny.en")),
                                           piper_voice=registry.piper_voice_path()))
    print(json.dumps(asdict(result), indent=1))
