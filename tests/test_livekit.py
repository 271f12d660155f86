"""The IVR's LiveKit Agents plugins through livekit-agents' own interfaces (no LiveKit server
can run here): STT ``recognize`` and ``stream`` on caller recordings at 8 kHz, TTS ``synthesize``
heard back by Whisper, and an ``AgentSession`` driven with text turns into the turn manager and
its CRM tool. Real models, a real SQLite CRM; only the LiveKit server API is recorded instead.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CALLS
from livekit import rtc
from livekit.agents import AgentSession, inference, llm, stt
from livekit.agents.voice import io

from handoff.crm import DEMO_ORDER, DEMO_PHONE
from intents.config import load_menu
from intents.dialogue.manager import TurnManager
from intents.dialogue.tools import Tools
from intents.dialogue.turns import CallInfo, Expect
from intents.entities import digit_string
from models.registry import shared_registry
from voice.app.settings import IvrSettings
from voice.audio import ASR_SAMPLE_RATE, read_audio, resample
from voice.livekit import (
    IvrAgent,
    PiperTTS,
    WhisperSTT,
    crm_function_tools,
    ivr_session,
    streaming_whisper,
)
from voice.livekit.turns import ValueTurnDetector


def frames(samples: np.ndarray, rate: int, ms: int = 20) -> list[rtc.AudioFrame]:
    """Audio as LiveKit delivers it: 20 ms int16 frames."""
    step = rate * ms // 1000
    return [rtc.AudioFrame(samples[i:i + step].tobytes(), rate, 1, len(samples[i:i + step]))
            for i in range(0, len(samples) - step + 1, step)]


def words(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower().replace("-", " "))


def utterance(name: str, index: int, manifest: dict, pad_s: float = 0.2) -> np.ndarray:
    """One caller turn of a fixture call, as a VAD would cut it (8 kHz G.711 recording)."""
    call = manifest[name]
    audio = read_audio(CALLS / call["file"])
    cue = call["utterances"][index]
    start = int(max(0.0, cue["start_s"] - pad_s) * audio.sample_rate)
    return audio.samples[start:int((cue["end_s"] + pad_s) * audio.sample_rate)]


async def test_stt_recognizes_telephone_turns_and_never_transcribes_silence(engines,
                                                                           calls_manifest):
    whisper = WhisperSTT(engines)
    assert not whisper.capabilities.streaming
    question = utterance("order_status_8k", 0, calls_manifest)
    event = await whisper.recognize(frames(question, 8000))
    assert event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    heard = words(event.alternatives[0].text)
    assert "order" in heard and "where" in heard, heard
    assert 0 < event.alternatives[0].confidence <= 1
    digits = utterance("order_status_8k", 1, calls_manifest)
    # the same turn at a WebRTC room's 48 kHz, stereo
    wide = resample(digits, 8000, 48000)
    stereo = np.repeat(wide, 2)
    step = 960
    room = [rtc.AudioFrame(stereo[i * 2:(i + step) * 2].tobytes(), 48000, 2, step)
            for i in range(0, len(wide) - step + 1, step)]
    assert digit_string((await whisper.recognize(room)).alternatives[0].text) == DEMO_ORDER
    quiet = np.zeros(8000 * 2, dtype=np.int16)
    assert (await whisper.recognize(frames(quiet, 8000))).alternatives[0].text == ""


async def test_stt_stream_cuts_a_call_into_turns_with_livekits_vad(engines, calls_manifest):
    call = calls_manifest["two_turns_8k"]
    audio = read_audio(CALLS / call["file"])
    stream = streaming_whisper(engines, inference.VAD()).stream()
    for frame in frames(audio.samples, audio.sample_rate):
        stream.push_frame(frame)
    stream.end_input()
    finals = [event.alternatives[0].text async for event in stream
              if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    expected = [words(u["text"]) for u in call["utterances"]]
    assert [words(text) for text in finals if text.strip()] == expected


async def test_tts_synthesizes_by_sentence_and_whisper_hears_it_back(engines):
    text = "Your order shipped with UPS. It should arrive on Tuesday."
    piper = PiperTTS(engines, sample_rate=8000)
    assert len(list(piper.sentences(text))) == 2  # Piper's own sentence split
    chunks = [audio async for audio in piper.synthesize(text)]
    assert chunks and all(c.frame.sample_rate == 8000 and c.frame.num_channels == 1
                          for c in chunks)
    pcm = np.concatenate([np.frombuffer(c.frame.data, dtype=np.int16) for c in chunks])
    assert 2.0 < len(pcm) / 8000 < 6.0
    heard = words((await engines.transcribe(resample(pcm, 8000, ASR_SAMPLE_RATE))).text).split()
    said_words = words(text).split()
    assert sum(w in heard for w in said_words) >= 0.6 * len(said_words), heard
    # Both sentences reached the audio. Piper's VITS samples noise, so the words Whisper hears
    # vary a little from run to run at 8 kHz ("your order" was once "your ownership"): each
    # sentence must be recognisable, not word-perfect.
    for sentence in ("Your order shipped with UPS.", "It should arrive on Tuesday."):
        said = words(sentence).split()
        assert sum(w in heard for w in said) >= 2, (sentence, heard)


class RecordedActions:
    """Stands in for LiveKit's server API (transfer, room deletion), which cannot run here."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    async def transfer(self, queue: str) -> None:
        self.asked.append(("transfer", queue))

    async def hang_up(self) -> None:
        self.asked.append(("hang-up", None))


def said(result) -> str:
    return " ".join(e.item.text_content for e in result.events
                    if e.type == "message" and e.item.role == "assistant")


async def test_agent_session_text_turns_reach_the_turn_manager_and_its_crm_tool(
        engines, crm, classifier):
    manager = TurnManager(load_menu(), classifier, crm, shared_registry().embedder())
    actions = RecordedActions()
    agent = IvrAgent(manager, CallInfo("lk-1", caller_number=DEMO_PHONE), actions)
    async with ivr_session(engines) as session:
        greeting = await session.start(agent, capture_run=True)
        assert "How can I help" in said(greeting)
        ask = await session.run(user_input="Hi, where is my order?")
        ask.expect.next_event().is_message(role="assistant")
        assert "order number" in said(ask)
        readback = await session.run(user_input="four five six seven one two")
        assert said(readback) == "I heard order number, 4 5 6, 7 1 2. Is that right?"
        answer = await session.run(user_input="Yes.")
        assert "UPS" in said(answer) and "Tuesday, November 24" in said(answer)
        assert [a.tool for a in manager.state.actions] == ["order_status"]
        assert manager.state.customer_name == "Alex Morgan"
        handed = await session.run(user_input="I want to speak to a person please")
        assert said(handed)
        for _ in range(100):  # the transfer follows the announcement's playout
            if actions.asked:
                break
            await asyncio.sleep(0.02)
        assert manager.state.route and actions.asked == [("transfer", manager.state.route)]


async def test_keyed_digits_reach_the_turn_manager(engines, crm, classifier):
    manager = TurnManager(load_menu(), classifier, crm, shared_registry().embedder())
    agent = IvrAgent(manager, CallInfo("lk-2"))
    async with AgentSession(turn_handling={"preemptive_generation": {"enabled": False}}) \
            as session:
        await session.start(agent)
        await agent.handle_dtmf("1")  # the legacy menu digit for order status
        for digit in DEMO_ORDER + "#":
            handle = await agent.handle_dtmf(digit)
        await handle.wait_for_playout()
        spoken = [m.text_content for m in session.history.messages() if m.role == "assistant"]
        assert "order number" in spoken[-2] and "4 5 6, 7 1 2" in spoken[-1]


async def test_the_turn_detector_waits_through_an_incomplete_value_and_ends_a_complete_one():
    settings = IvrSettings().turn
    expecting = [(Expect.ANYTHING, None)]
    delays: list[float] = []
    detector = ValueTurnDetector(settings, lambda: expecting[0], delays.append, 0.25)

    async def p(text: str) -> float:
        ctx = llm.ChatContext()
        ctx.add_message(role="assistant", content="What's your order number?")
        ctx.add_message(role="user", content=text)
        return await detector.predict_end_of_turn(ctx)

    threshold = await detector.unlikely_threshold(None)
    assert await p("Where is my order?") > threshold and not delays
    expecting[0] = (Expect.DIGITS, 6)
    assert await p("Four. five 6.") < threshold
    assert delays[-1] == pytest.approx(settings.value_pause_ms / 1000 - 0.25)
    assert await p("Four. five 6. 7 1 2") > threshold
    assert detector.last_rule == "value-complete"
    expecting[0] = (Expect.ANYTHING, None)
    assert await p("I was wondering about my order and") < threshold  # trails off: more time


async def test_crm_tools_run_through_livekits_tool_executor(crm):
    context = llm.ToolContext(crm_function_tools(Tools(crm)))
    assert {"order_status", "account_balance", "open_case"} <= set(context.function_tools)
    found = await llm.utils.execute_function_call(llm.FunctionToolCall(
        name="order_status", arguments=f'{{"order_number": "{DEMO_ORDER}"}}', call_id="c1"),
        context)
    assert not found.fnc_call_out.is_error and "UPS" in found.fnc_call_out.output
    refused = await llm.utils.execute_function_call(llm.FunctionToolCall(
        name="order_status", arguments='{"order_number": "12"}', call_id="c2"), context)
    assert refused.fnc_call_out.is_error and "invalid arguments" in refused.fnc_call_out.output


def test_the_worker_entrypoint_is_livekits_cli():
    done = subprocess.run([sys.executable, "-m", "voice.livekit", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "start" in done.stdout and "dev" in done.stdout


class RecordedCaller(io.AudioInput):
    """A caller recording played into the session in real time (LiveKit's endpointing runs on
    the clock), then silence until the test ends."""

    def __init__(self, samples: np.ndarray, rate: int) -> None:
        super().__init__(label="recorded caller")
        self.frames = frames(samples, rate)
        self.rate = rate
        self.sent = 0
        self.started: float | None = None

    async def __anext__(self) -> rtc.AudioFrame:
        loop = asyncio.get_running_loop()
        if self.started is None:
            self.started = loop.time()
        await asyncio.sleep(max(0.0, self.started + self.sent * 0.02 - loop.time()))
        frame = self.frames[self.sent] if self.sent < len(self.frames) else \
            rtc.AudioFrame(bytes(2 * self.rate // 50), self.rate, 1, self.rate // 50)
        self.sent += 1
        return frame


class CapturedLine(io.AudioOutput):
    """Where the agent's speech goes: kept, and played out in real time like a device would."""

    def __init__(self) -> None:
        super().__init__(label="captured line", capabilities=io.AudioOutputCapabilities(
            pause=False))
        self.segments: list[list[rtc.AudioFrame]] = []
        self._current: list[rtc.AudioFrame] | None = None
        self._playing: asyncio.Task | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._current is None:
            self._current = []
            self.segments.append(self._current)
            self.on_playback_started(created_at=time.time())
        self._current.append(frame)

    def flush(self) -> None:
        super().flush()
        if self._current is None:
            return
        duration = sum(f.duration for f in self._current)
        self._current = None
        self._playing = asyncio.create_task(self._play(duration))

    async def _play(self, duration: float) -> None:
        await asyncio.sleep(duration)
        self.on_playback_finished(playback_position=duration, interrupted=False)

    def clear_buffer(self) -> None:
        if self._playing is not None and not self._playing.done():
            self._playing.cancel()
            self.on_playback_finished(playback_position=0.0, interrupted=True)
        self._current = None


@pytest.mark.slow
async def test_a_recorded_telephone_call_through_the_agent_session_audio_path(
        engines, crm, classifier, calls_manifest):
    """Caller audio (8 kHz G.711) -> LiveKit's VAD -> WhisperSTT -> the value-aware turn
    detector -> turn manager -> PiperTTS -> audio out, inside one AgentSession: the caller
    barges in on the greeting, reads the order number in groups (one turn), confirms, and hears
    the CRM's answer, which Whisper hears back from the captured audio."""
    call = calls_manifest["order_status_8k"]
    audio = read_audio(CALLS / call["file"])
    manager = TurnManager(load_menu(), classifier, crm, shared_registry().embedder())
    agent = IvrAgent(manager, CallInfo("lk-3", caller_number=DEMO_PHONE))
    caller, line = RecordedCaller(audio.samples, audio.sample_rate), CapturedLine()
    session = ivr_session(engines)
    session.input.audio, session.output.audio = caller, line
    async with session:
        await session.start(agent)
        deadline = call["utterances"][-1]["end_s"] + 20.0  # generous: a shared, busy machine
        while caller.sent * 0.02 < deadline and not (
                manager.state.actions and len(line.segments) >= 4 and
                session.agent_state == "listening"):
            await asyncio.sleep(0.2)
        turns = [m.text_content for m in session.history.messages() if m.role == "user"]
        replies = [m.text_content for m in session.history.messages()
                   if m.role == "assistant"]
    assert [a.tool for a in manager.state.actions] == ["order_status"], (turns, replies)
    assert DEMO_ORDER in [digit_string(t or "") for t in turns], turns  # one turn, not three
    assert "UPS" in replies[-1]
    answer = line.segments[-1]
    pcm = np.frombuffer(b"".join(bytes(f.data) for f in answer), dtype=np.int16)
    heard = words((await engines.transcribe(
        resample(pcm, answer[0].sample_rate, ASR_SAMPLE_RATE))).text).split()
    assert {"order", "arrive", "tuesday"} <= set(heard), heard


def test_the_worker_keeps_card_numbers_out_of_livekits_logs(caplog):
    import logging

    from voice.livekit.worker import RedactPii

    logger = logging.getLogger("livekit.agents")
    pii = RedactPii()
    logger.addFilter(pii)
    try:
        with caplog.at_level(logging.DEBUG, logger="livekit.agents"):
            logger.debug("received user transcript", extra={
                "lk.pii.user_transcript": "my card is 4111 1111 1111 1111 thanks"})
    finally:
        logger.removeFilter(pii)
    said = getattr(caplog.records[-1], "lk.pii.user_transcript")
    assert "4111 1111" not in said and "[card ending 1111]" in said


class TierLikeEngines:
    """The interface the inference tier's client offers (``transcribe``, ``synthesize``, no
    local voice), over the real local engines."""

    def __init__(self, engines) -> None:
        self.settings = engines.settings
        self.transcribe = engines.transcribe
        self.synthesize = engines.synthesize


async def test_the_plugins_work_on_engines_without_local_models(engines, calls_manifest):
    tier = TierLikeEngines(engines)
    piper = PiperTTS(tier, sample_rate=16000)
    assert piper.voice is None
    pcm = b"".join([bytes(a.frame.data) async for a in piper.synthesize("Thanks for calling.")])
    heard = words((await engines.transcribe(np.frombuffer(pcm, dtype=np.int16))).text)
    assert "thanks" in heard and "calling" in heard, heard
    question = utterance("order_question_8k", 1, calls_manifest)
    event = await WhisperSTT(tier).recognize(frames(question, 8000))
    assert "arrive" in words(event.alternatives[0].text)
