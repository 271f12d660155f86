"""Card numbers spoken and keyed on whole calls: espeak-ng and Piper voices over a G.711 line,
real VAD, Whisper, turn manager, SQLite stores, the call API, handoff packages and webhooks.
Afterwards every place a call leaves a trace is searched for the card numbers in clear."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from loopback import serve
from test_policy_signals_dtmf import tone
from test_webhooks import SECRET, receiver

from handoff.build import build_package
from handoff.crm import DEMO_PHONE
from handoff.store import HandoffStore
from handoff.webhooks import WebhookPusher
from intents.config import load_menu
from intents.dialogue.manager import TurnManager
from intents.dialogue.turns import CallInfo
from intents.entities import digit_runs
from models.registry import shared_registry
from voice.app.callstore import CallRecord, CallStore
from voice.app.simulate import simulate_call
from voice.audio import AudioChunk, read_audio, telephone_channel

VISA, MASTERCARD, AMEX = "4111111111111111", "5555555555554444", "378282246310005"
CARDS = (VISA, MASTERCARD, AMEX)

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (make system-deps)")


def espeak(text: str, tmp: Path) -> np.ndarray:
    """``text`` in espeak-ng's voice, through the phone channel (8 kHz mu-law)."""
    path = tmp / f"espeak-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return telephone_channel(read_audio(path)).samples


def piper(text: str) -> np.ndarray:
    """``text`` in the project's Piper voice, through the phone channel."""
    from piper import SynthesisConfig

    voice = shared_registry().piper_voice()
    still = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    audio = np.concatenate([c.audio_int16_array for c in voice.synthesize(text, still)])
    return telephone_channel(AudioChunk(audio, voice.config.sample_rate)).samples


def keyed(digits: str) -> np.ndarray:
    """Keypad tones as a phone sends them in-band (100 ms on, 100 ms off), mu-law coded."""
    parts = [np.concatenate([tone(key, 8000, 0.1), np.zeros(800, np.int16)]) for key in digits]
    return telephone_channel(AudioChunk(np.concatenate(parts), 8000)).samples


def caller(*parts: tuple[np.ndarray, float]) -> AudioChunk:
    """Audio pieces, each followed by a pause of so many seconds."""
    out = [np.zeros(4000, np.int16)]
    for audio, pause_s in parts:
        out += [audio, np.zeros(int(8000 * pause_s), np.int16)]
    return AudioChunk(np.concatenate(out), 8000)


def leaks(text: str) -> list[str]:
    """Card numbers in clear in ``text``: any run of 13+ digits (figures or words), and any
    run holding eight digits in a row of a test card's hidden part (all but its last four)."""
    found = []
    for _, _, run in digit_runs(text):
        if len(run) >= 13:
            found.append(run)
        for card in CARDS:
            hidden = card[:-4]
            found += [run for k in range(len(hidden) - 7) if hidden[k:k + 8] in run][:1]
    found += re.findall(r"\d{13,}", text)
    return found


def test_the_leak_detector_finds_cards_in_clear():
    """The search below is only as good as this: cards as figures, groups or words are found,
    their masked markers and ordinary numbers are not."""
    for clear in ("4111 1111 1111 1111", "4,111,111,111,111,111", "555555555555",
                  "three seven eight two, eight two two four six three, one zero",
                  '{"caller_text": "4111111111111111"}'):
        assert leaks(clear), clear
    for masked in ("[card ending 1111]", "order 456712", "+15550000001", "at 1732871234.5"):
        assert not leaks(masked), masked


async def run_call(name: str, audio: AudioChunk, settings, crm, classifier, store: CallStore,
                   caller_number: str | None = DEMO_PHONE) -> tuple[TurnManager, list]:
    """One call through the real pipeline; its call row and turns written as ``ivr serve``
    writes them (the row first, turns as they complete, the row again at the end)."""
    tm = TurnManager(load_menu(), classifier, crm, shared_registry().embedder())
    record = CallRecord(id=name, started_at=time.time(), transport="simulated",
                        caller_number=caller_number)
    store.save_call(record)
    result = await simulate_call(
        audio, settings, handler=tm, realtime=False, call_info=CallInfo(name, caller_number),
        on_turn=lambda turn: store.save_turn(name, turn.to_dict()))
    record.ended_at, record.end_reason = time.time(), "caller-finished"
    record.context = {"menu_version": tm.state.menu_version, "slots": dict(tm.state.slots)}
    store.save_call(record)
    return tm, result.turns


@pytest.mark.slow
async def test_spoken_and_keyed_cards_never_reach_any_record_in_clear(
        settings, crm, classifier, tmp_path, caplog_loguru):
    from fastapi.testclient import TestClient

    from handoff.api import BearerAuth
    from voice.app.http import create_app
    from voice.app.metrics import IvrMetrics

    store = CallStore(f"sqlite:///{tmp_path}/calls.sqlite", spool_dir=tmp_path / "spool")
    handoffs = HandoffStore(f"sqlite:///{tmp_path}/handoffs.sqlite",
                            spool_dir=tmp_path / "hspool")

    # 1. Asked for an order number, the caller reads a card (espeak, digit by digit).
    order_tm, order_turns = await run_call("pci-order", caller(
        (espeak("Where is my order?", tmp_path), 5.0),
        (espeak("four one one one, one one one one, one one one one, one one one one",
                tmp_path), 6.0)), settings, crm, classifier, store)
    assert len(order_turns) == 2, [t.caller_text for t in order_turns]
    assert "[card ending" in order_turns[1].caller_text, order_turns[1].caller_text
    assert "card number" in order_turns[1].reply_text
    assert "I heard" not in order_turns[1].reply_text  # never read back as an order number
    assert "order_number" not in order_tm.state.slots

    # 2. A caller volunteers a card and its expiry (Piper, grouped as written on the card).
    billing_tm, billing_turns = await run_call("pci-billing", caller(
        (piper("I was charged twice on my card. The number is 5555 5555 5555 4444, "
               "expiry 12 27."), 6.0)), settings, crm, classifier, store)
    assert billing_turns and "[card ending" in billing_turns[0].caller_text, \
        [t.caller_text for t in billing_turns]
    assert "1227" not in billing_turns[0].caller_text  # the expiry went with it

    # 3. Paying by card: the card is asked for by keypad; the caller reads it aloud anyway
    #    (espeak, never transcribed: ASR is paused), then keys it (in-band DTMF).
    pay_tm, pay_turns = await run_call("pci-pay", caller(
        (piper("I'd like to pay my bill by card."), 11.0),
        (espeak("three seven eight two, eight two two four six three, one zero zero zero five",
                tmp_path), 3.0),
        (keyed(AMEX), 6.0)), settings, crm, classifier, store)
    assert len(pay_turns) == 1, [t.caller_text for t in pay_turns]  # the spoken card: no turn
    assert "keypad" in pay_turns[0].reply_text
    assert pay_tm.state.slots.get("card_number") == "[card ending 0005]"
    assert pay_tm.state.route == "billing"
    logs = caplog_loguru.getvalue()
    assert "during keypad entry, not transcribed" in logs
    assert logs.count(": heard ") >= 3  # what ASR heard is logged (masked), so it is searched

    # Handoff packages and their webhooks, for every call the flow handed to a human.
    app = receiver()
    bodies: list[str] = []
    with serve(app) as base:
        pusher = WebhookPusher([f"{base}/hook"], SECRET, handoffs, attempts=1)
        for tm in (order_tm, billing_tm, pay_tm):
            if tm.state.route is None:
                continue
            package = build_package(tm.state, crm, tm.transcript)
            handoffs.save(package)
            results = await pusher.push(package)
            assert all(r.delivered for r in results), results
        await pusher.aclose()
    bodies = [json.dumps(b) for b in app.state.received]
    assert len(bodies) >= 2  # the billing and the payment calls at least
    assert "[card ending 0005]" in " ".join(bodies)

    token = "pci-test-token"
    api = TestClient(create_app(store, IvrMetrics(), lambda: {"status": "ok"},
                                auth=BearerAuth({token: "pci test"})),
                     base_url="http://127.0.0.1")  # a host the API answers
    answer = api.get("/api/calls", params={"limit": 10},
                     headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and len(answer.json()) == 3
    sinks = {"api": answer.text, "log": caplog_loguru.getvalue(),
             "handoffs api": json.dumps(handoffs.latest(10)), "webhooks": " ".join(bodies),
             "transcripts": " ".join(line.text for tm in (order_tm, billing_tm, pay_tm)
                                     for line in tm.transcript)}
    files = [p for p in tmp_path.glob("*.sqlite*")]  # the databases, -wal and -shm included
    assert any(p.name.endswith("-wal") for p in files), files
    for path in files:
        sinks[path.name] = path.read_bytes().decode("latin-1")
    assert "[card ending" in sinks["calls.sqlite-wal"] + sinks["calls.sqlite"]
    for name, text in sinks.items():
        assert not leaks(text), (name, leaks(text))
