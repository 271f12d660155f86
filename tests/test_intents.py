"""Intent detection with the real MiniLM encoder: the shipped menu and the eval command."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys

import pytest
from conftest import FIXTURES

from intents.classifier import IntentClassifier
from intents.config import OUT_OF_SCOPE, MenuConfig, load_menu
from models.registry import shared_registry

TEST_CSV = FIXTURES / "intents" / "retail_billing_test.csv"


@pytest.fixture(scope="module")
def menu() -> MenuConfig:
    return load_menu()


@pytest.fixture(scope="module")
def classifier(menu) -> IntentClassifier:
    texts, labels = menu.training_data()
    return IntentClassifier(shared_registry().embedder()).fit(texts, labels)


def test_the_shipped_menu_is_versioned_and_every_intent_has_a_digit_or_none(menu):
    assert menu.version
    assert menu.by_digit("1").name == "order_status"
    assert menu.by_digit("0").name == "talk_to_human"
    assert menu.by_name(OUT_OF_SCOPE).dtmf is None


def test_a_menu_with_a_digit_twice_is_refused(menu):
    data = menu.model_dump()
    data["intents"][1]["dtmf"] = "1"
    with pytest.raises(ValueError, match="same DTMF digit"):
        MenuConfig.model_validate(data)


@pytest.mark.parametrize("said, intent", [
    ("where's my parcel", "order_status"),
    ("I think you took the payment twice", "billing_question"),
    ("I need to speak to an actual person", "talk_to_human"),
    ("are you open on Sunday morning", "opening_hours"),
])
def test_callers_words_reach_the_right_intent(classifier, said, intent):
    prediction = classifier.predict(said)
    assert prediction.label == intent, prediction


def test_something_the_menu_does_not_cover_is_out_of_scope(classifier):
    prediction = classifier.predict("what's the best pizza topping")
    assert prediction.out_of_scope
    assert prediction.alternatives  # still says what came closest


def test_shared_vectors_need_the_words_too_for_the_full_model(menu, caplog):
    fresh = IntentClassifier(shared_registry().embedder()).fit(*menu.training_data())
    said = "where's my parcel"
    vectors = fresh.embed([said])
    with_words = fresh.predict_vectors(vectors, texts=[said])[0]
    alone = fresh.predict(said)
    assert (with_words.label, round(with_words.confidence, 6)) == \
        (alone.label, round(alone.confidence, 6))
    with caplog.at_level(logging.WARNING, logger="intents.classifier"):
        meaning_only = fresh.predict_vectors(vectors)[0]  # still works, on the embedding alone
    assert meaning_only.label == "order_status"
    assert "pass texts=" in caplog.text
    with pytest.raises(ValueError, match="2 texts for 1 vectors"):
        fresh.predict_vectors(vectors, texts=[said, said])


def _menu_csv(menu: MenuConfig, path) -> None:
    texts, labels = menu.training_data()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))


def test_ivr_intents_eval_on_the_shipped_menu(menu, tmp_path):
    train = tmp_path / "train.csv"
    _menu_csv(menu, train)
    done = subprocess.run([sys.executable, "-m", "voice.app.cli", "intents", "eval", "--train",
                           str(train), "--test", str(TEST_CSV)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"accuracy", "macro_f1", "per_label_recall", "oos_recall",
            "median_ms_per_utterance"} <= set(result)
    assert result["accuracy"] >= 0.8, result
    assert result["test_examples"] == 38


def test_eval_takes_k_shots_per_label_and_refuses_a_bad_csv(menu, tmp_path):
    from intents.evaluate import evaluate, take_shots

    texts, labels = menu.training_data()
    few_t, few_l = take_shots(texts, labels, 3, seed=1)
    assert len(few_t) == 3 * len(set(labels))
    assert take_shots(texts, labels, 3, seed=1) == (few_t, few_l)  # deterministic
    bad = tmp_path / "bad.csv"
    bad.write_text("utterance,intent\nhello,greet\n")
    with pytest.raises(ValueError, match="text,label"):
        evaluate(bad, TEST_CSV, embedder=shared_registry().embedder())
