"""The inference tier on loopback: a real `ivr inference` process on a unix socket, real models,
real calls played through the pipeline by workers that hold no ASR, TTS or embedding model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CALLS
from test_speech_path import word_error_rate

from intents.dialogue.simple import EchoTurnHandler
from voice.app.call import Call
from voice.app.settings import IvrSettings
from voice.app.simulate import simulate_call
from voice.audio import AudioChunk, read_audio, resample
from voice.inference.client import (
    InferenceClient,
    InferenceRefused,
    InferenceUnavailable,
    RemoteEngines,
    shared_remote_engines,
)
from voice.inference.outage import WAIT_STEP
from voice.inference.wire import Message
from voice.pipeline.clauses import spoken_pieces
from voice.transports.base import LineInfo
from voice.transports.recorded import RecordedLine

REPO = Path(__file__).resolve().parent.parent
LOAD_S = 240  # model loading on a busy 2-core machine took 20 s; leave room


class Tier:
    """One `ivr inference` process that a test can kill and start again."""

    def __init__(self, socket: Path, log: Path) -> None:
        self.target = f"unix:{socket}"
        self.log = log
        self.process: subprocess.Popen | None = None
        self.client = InferenceClient(self.target, IvrSettings())

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "voice.app.cli", "inference", "--bind", self.target],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_up(self) -> None:
        deadline = time.monotonic() + LOAD_S
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, \
                f"the tier exited: {self.log.read_text()[-2000:]}"
            if self.client.wait_ready(1.0):
                return
        raise AssertionError(f"the tier did not come up: {self.log.read_text()[-2000:]}")

    def ensure_up(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.wait_up()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tier")
    tier = Tier(folder / "inference.sock", folder / "tier.log")
    try:
        tier.ensure_up()
        yield tier
    finally:
        tier.kill()
        tier.client.close()


def remote_settings(tier: Tier, **overrides) -> IvrSettings:
    return IvrSettings.load(None, models__inference_url=tier.target, **overrides)


def engines_with_phrases(settings: IvrSettings) -> RemoteEngines:
    """The worker's client, once it holds the phrases it says while the tier is down."""
    engines = shared_remote_engines(settings)
    deadline = time.monotonic() + 30
    while any(engines.kept(piece, 8000) is None for piece in engines.kept_phrases):
        assert time.monotonic() < deadline, "the worker never fetched its outage phrases"
        time.sleep(0.1)
    return engines


def two_sentences(gap_s: float = 6.0) -> AudioChunk:
    """'He was not an ill-disposed young man' ... 'He might even have been made amiable
    himself', apart by ``gap_s`` of silence (room for the first reply to play)."""
    chunk = read_audio(CALLS / "two_turns_8k.wav")
    rate = chunk.sample_rate
    first = chunk.samples[int(0.3 * rate):int(3.7 * rate)]
    second = chunk.samples[int(6.35 * rate):int(9.95 * rate)]
    silence = np.zeros(int(gap_s * rate), np.int16)
    return AudioChunk(np.concatenate([silence[:rate // 2], first, silence, second,
                                      silence[:2 * rate]]), rate)


def contains(haystack: np.ndarray, needle: np.ndarray) -> bool:
    """``needle`` (a kept phrase's first 200 ms) occurs sample for sample in what was played."""
    probe = needle[:1600]
    hits = np.flatnonzero(haystack == probe[0])
    return any(np.array_equal(haystack[i:i + len(probe)], probe) for i in hits)


class RouteRecorder:
    """Stands in for the warm transfer (no agent line here): records the queue asked for."""

    def __init__(self) -> None:
        self.routes: list[str] = []
        self.call: Call | None = None

    def __call__(self, call: Call) -> RouteRecorder:
        self.call = call
        return self

    async def run(self) -> None:
        self.routes.append(await self.call.session.transfer_requested())

    async def finish(self, reason: str) -> None:
        pass


async def run_call(chunk: AudioChunk, settings: IvrSettings, *, on_turn=None,
                   transfer=None) -> tuple[Call, RecordedLine]:
    """One call in real time through the call core, as ``simulate_call`` plays it, keeping the
    call record. Real time, because faster than that stream time stands still while ASR waits,
    so the caller's turn never ends and no acknowledgement is due."""
    line = RecordedLine(chunk, settings.audio.frame_ms, tail_s=2.0,
                        info=LineInfo(transport="recorded"))
    call = Call(line, settings, EchoTurnHandler(None), None, shutdown=asyncio.Event(),
                on_turn=on_turn, transfer=transfer)
    await call.run()
    return call, line


# -- the tier answers like the models in the worker -----------------------------------------------


@pytest.mark.slow
async def test_two_workers_on_one_tier_hear_what_in_process_models_hear(tier, settings):
    recordings = [CALLS / "two_turns_8k.wav", CALLS / "digits_8k.wav"]
    local = [[t.caller_text for t in (await simulate_call(r, settings, realtime=False)).turns]
             for r in recordings]
    assert all(local), local
    # Worker 1 is this process, worker 2 an `ivr simulate` process; both on the one tier, at once.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IVR_")},
           "IVR_MODELS__INFERENCE_URL": tier.target}
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voice.app.cli", "simulate", "--fast", "--handler", "echo",
        str(recordings[1]), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    served_before = tier.client.describe()["served"]
    here, (out, err) = await asyncio.gather(
        simulate_call(recordings[0], remote_settings(tier), realtime=False), other.communicate())
    assert other.returncode == 0, err.decode()[-2000:]
    there = [json.loads(line)["caller_text"] for line in out.decode().splitlines()
             if line.startswith("{")]
    assert [t.caller_text for t in here.turns] == local[0]
    assert there == local[1]
    assert tier.client.describe()["served"] > served_before + 4  # both went through the tier


def test_a_speech_hint_reaches_the_tier_and_primes_it_as_in_process(tier, engines):
    recording = read_audio(REPO / "cohorts" / "retail_billing" / "audio" / "refund-broken-item.wav")
    speech = resample(recording.samples, recording.sample_rate, 16000)
    hint = "Order status, billing question, refund, payment."
    local = engines.transcriber.transcribe(speech, 16000, hint=hint).text
    assert local != engines.transcriber.transcribe(speech, 16000).text  # the hint matters here
    assert tier.client.transcribe(speech, None, hint).text == local


# -- bad input --------------------------------------------------------------------------------------


def test_bad_requests_get_clear_errors_and_the_tier_keeps_serving(tier):
    speech = resample(read_audio(CALLS / "digits_8k.wav").samples, 8000, 16000)
    client = tier.client
    with pytest.raises(InferenceRefused, match="INVALID_ARGUMENT: message truncated"):
        client.call("Transcribe", bytes(Message({"rate": 16000}, speech.tobytes()))[:-100])
    with pytest.raises(InferenceRefused, match=r"OUT_OF_RANGE: audio of 31.0 s exceeds "
                                               r"inference.max_audio_s \(30 s\)"):
        client.transcribe(np.zeros(31 * 16000, np.int16), None)
    with pytest.raises(InferenceRefused, match="NOT_FOUND: ASR model 'large-v3' is not served"):
        client.transcribe(speech, "large-v3")
    with pytest.raises(InferenceRefused, match="INVALID_ARGUMENT: ASR audio must be 16000 Hz"):
        client.call("Transcribe", Message({"rate": 8000}, speech.tobytes()))
    with pytest.raises(InferenceRefused, match="NOT_FOUND: voice 'en_GB-alan' is not served"):
        client.call("Synthesize", Message({"text": "Hello.", "rate": 8000,
                                           "voice": "en_GB-alan"}))
    with pytest.raises(InferenceRefused, match="INVALID_ARGUMENT: header field 'texts'"):
        client.call("Embed", Message({"texts": "not a list"}))
    with pytest.raises(InferenceRefused, match="INVALID_ARGUMENT: ASR hint of 2001 characters"):
        client.transcribe(speech, None, "x" * 2001)
    # ...and every one of those left the tier serving the next caller.
    assert client.transcribe(speech, None).text.replace(",", "").split()[:2] == ["4", "5"]


def test_a_model_without_a_local_copy_stops_the_tier_at_start_with_the_fix(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IVR_")},
           "IVR_MODELS__ASR_MODEL": "large-v3-turbo", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "voice.app.cli", "inference", "--bind",
                           f"unix:{tmp_path}/tier.sock"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "ASR model 'large-v3-turbo' is not a bundled model" in done.stderr
    assert "nothing is downloaded" in done.stderr


def test_a_second_tier_on_a_live_socket_stops_and_the_first_keeps_serving(tier):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    done = subprocess.run([sys.executable, "-m", "voice.app.cli", "inference", "--bind",
                           tier.target], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert f"another inference tier is serving on {tier.target}" in done.stderr
    assert "models loaded" not in done.stderr  # it stopped before loading anything
    assert tier.client.describe()["asr_models"] == ["tiny.en"]


# -- the tier restarts mid-call ----------------------------------------------------------------------


@pytest.mark.slow
async def test_a_call_says_one_moment_while_the_tier_restarts_and_goes_on(tier, calls_manifest):
    tier.ensure_up()
    settings = remote_settings(tier, inference__outage_s=LOAD_S)
    engines = engines_with_phrases(settings)

    def restart_after_first_turn(record) -> None:
        if record.index == 1:
            tier.kill()  # SIGKILL, mid-call: the first reply heard, the second turn to come
            tier.start()

    call, line = await run_call(two_sentences(), settings, on_turn=restart_after_first_turn)
    turns = sorted(call.session.turns.values(), key=lambda r: r.index)
    said = [u["text"] for u in calls_manifest["two_turns_8k"]["utterances"]]
    assert len(turns) == 2
    for turn, text in zip(turns, said):
        assert word_error_rate(text, turn.caller_text) <= 0.25, turn.caller_text
    assert WAIT_STEP not in turns[0].ladder and WAIT_STEP in turns[1].ladder
    assert turns[1].reply_text == f"You said: {turns[1].caller_text}"
    outage = call.record.context["inference"]["outages"]
    assert [(o["kind"], o["stage"], o["acknowledged"]) for o in outage] == \
        [("recovered", "asr", True)]
    assert "unreachable" in outage[0]["error"] and "error" not in call.record.context["inference"]
    heard = line.conversation()[:, 1]
    acknowledgement = np.frombuffer(engines.kept(settings.tts.acknowledgement, 8000), np.int16)
    assert contains(heard, acknowledgement)  # "One moment." reached the caller


@pytest.mark.slow
async def test_a_tier_that_stays_down_hands_the_caller_to_a_human(tier):
    tier.ensure_up()
    # 5 s: the outage starts at a pause inside the second sentence (speculative ASR), so it
    # outlasts the sentence and "One moment" is due before the caller is handed over.
    settings = remote_settings(tier, inference__outage_s=5.0)
    engines = engines_with_phrases(settings)

    def kill_after_first_turn(record) -> None:
        if record.index == 1:
            tier.kill()

    transfer = RouteRecorder()
    call, line = await run_call(two_sentences(), settings, on_turn=kill_after_first_turn,
                                transfer=transfer)
    assert transfer.routes == [settings.inference.outage_queue]
    entry = call.record.context["inference"]
    assert [(o["kind"], o["stage"]) for o in entry["outages"]] == [("down", "asr")]
    assert entry["outages"][0]["waited_s"] >= 5.0
    assert "unreachable for more than 5 s: caller told and offered a human" in entry["error"]
    heard = line.conversation()[:, 1]
    for phrase in (settings.tts.acknowledgement, settings.inference.outage_message):
        for piece in spoken_pieces(phrase):  # every piece of both reached the caller
            assert contains(heard, np.frombuffer(engines.kept(piece, 8000), np.int16)), piece
    with pytest.raises(InferenceUnavailable):
        tier.client.describe()
