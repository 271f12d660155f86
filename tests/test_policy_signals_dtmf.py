"""The menu policy, caller signals and in-band DTMF, with the real encoder and real speech."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FIXTURES

from intents.classifier import IntentClassifier, Prediction
from intents.config import load_menu
from intents.policy import Action, MenuPolicy
from intents.signals import SignalTracker
from models.registry import shared_registry
from voice.audio import mulaw_decode, mulaw_encode, read_audio, resample, telephone_channel
from voice.dtmf import DtmfDetector


@pytest.fixture(scope="module")
def classifier():
    texts, labels = load_menu().training_data()
    return IntentClassifier(shared_registry().embedder()).fit(texts, labels)


def test_speech_and_the_digit_it_replaces_reach_the_same_route(classifier):
    policy = MenuPolicy(load_menu())
    spoken = policy.decide(classifier.predict("where is my parcel, it hasn't come"))
    keyed = policy.from_dtmf("1")
    assert spoken.action == keyed.action == Action.ROUTE
    assert spoken.intent == keyed.intent and spoken.intent.route.target == "order_status"


def test_the_middle_band_asks_one_question_naming_the_two_likeliest():
    policy = MenuPolicy(load_menu())
    unsure = Prediction("refund", 0.4, [("refund", 0.4), ("billing_question", 0.35)], 5.0)
    decision = policy.decide(unsure)
    assert decision.action == Action.CLARIFY
    assert decision.options == ("refund", "billing_question")
    assert "refund" in decision.prompt and "billing question" in decision.prompt


def test_not_understood_twice_offers_the_menu_then_escalates(classifier):
    policy = MenuPolicy(load_menu())
    first = policy.decide(classifier.predict("tell me about the moon landing"))
    assert first.action == Action.MENU and "press 1" in first.prompt
    second = policy.decide(classifier.predict("what's the best pizza topping"))
    assert second.action == Action.ESCALATE and second.intent.name == "talk_to_human"


def test_signals_from_what_callers_say():
    tracker = SignalTracker(shared_registry().embedder())
    calm = tracker.observe("Where is my order?")
    assert not calm.asks_for_human and calm.frustration == 0 and calm.rephrase_of is None
    again = tracker.observe("I already told you, my parcel has not arrived, this is ridiculous")
    assert again.frustration >= 0.5 and again.rephrase_of == 0
    assert tracker.observe("Just get me a real person").asks_for_human
    legal = tracker.observe("This is fraud, I'm calling my lawyer")
    assert legal.compliance_keywords == ("fraud", "lawyer")
    assert tracker.observe("this damn thing").profanity


def tone(key: str, rate: int, seconds: float) -> np.ndarray:
    from voice.dtmf import HIGH, KEYS, LOW

    row = next(i for i, r in enumerate(KEYS) if key in r)
    t = np.arange(int(rate * seconds)) / rate
    wave = np.sin(2 * np.pi * LOW[row] * t) + np.sin(2 * np.pi * HIGH[KEYS[row].index(key)] * t)
    return (wave * 6000).astype(np.int16)


def keys_in(audio: np.ndarray, rate: int) -> str:
    detector, block, found = DtmfDetector(rate), rate // 50, ""
    for i in range(0, len(audio) - block + 1, block):
        found += detector.push(audio[i:i + block]) or ""
    return found


def test_inband_digits_survive_the_phone_channel_and_speech_is_not_a_digit():
    gap = np.zeros(1600, np.int16)
    keyed = np.concatenate([tone("4", 8000, 0.1), gap, tone("0", 8000, 0.08), gap,
                            tone("#", 8000, 0.1), gap])
    assert keys_in(mulaw_decode(mulaw_encode(keyed)), 8000) == "40#"
    assert keys_in(resample(keyed, 8000, 16000), 16000) == "40#"
    speech = telephone_channel(read_audio(FIXTURES / "speech" / "jfk.flac")).samples
    assert keys_in(speech, 8000) == ""
