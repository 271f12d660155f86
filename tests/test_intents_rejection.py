"""The rejection rule chosen by the menu's own cross-validation, spoken-style augmentation,
`ivr intents check` and the richer `ivr intents eval` (real MiniLM encoder)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURES

from intents.augment import augment, rewrites, whisper_numbers
from intents.check import check_menu, format_report, run
from intents.classifier import IntentClassifier, choose_threshold, fold_assignment
from intents.config import OUT_OF_SCOPE, MenuConfig, load_menu
from intents.evaluate import confusion_pairs, evaluate, score
from models.registry import shared_registry

TEST_CSV = FIXTURES / "intents" / "retail_billing_test.csv"
MENU = "intents/menus/retail_billing.yaml"


def _cli_module() -> str:
    import importlib.util

    try:
        return "voice.app.cli" if importlib.util.find_spec("voice.app.cli") else "voice.cli"
    except ModuleNotFoundError:
        return "voice.cli"


CLI = _cli_module()


@pytest.fixture(scope="module")
def menu() -> MenuConfig:
    return load_menu()


@pytest.fixture(scope="module")
def embedder():
    return shared_registry().embedder()


# -- the threshold ----------------------------------------------------------------------------

def test_the_threshold_keeps_a_fixed_share_of_good_answers_whatever_the_scale():
    scores = np.linspace(0, 1, 101)
    correct = np.ones(101, bool)
    t = choose_threshold(scores, correct, keep=0.97)
    assert (scores >= t).mean() == pytest.approx(0.97, abs=0.011)
    # a menu whose scores are all lower (more intents share the probability) gets a lower one
    assert choose_threshold(scores * 0.3, correct, keep=0.97) == pytest.approx(t * 0.3)
    # wrong answers do not move it
    wrong = correct.copy()
    wrong[:10] = False
    assert choose_threshold(scores, wrong, keep=1.0) == pytest.approx(0.1)


def test_folds_keep_an_example_with_its_rewrites_and_never_hold_out_a_lone_example():
    labels = ["a"] * 6 + ["b"] * 4 + ["c"]
    groups = [0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7]
    fold = fold_assignment(labels, groups, folds=3)
    assert fold[0] == fold[1] and fold[2] == fold[3] and fold[4] == fold[5]
    assert fold[-1] == -1
    assert set(fold[:-1]) <= {0, 1, 2}


def test_the_shipped_menu_gets_its_threshold_from_cross_validation(menu, embedder):
    clf = IntentClassifier(embedder).fit(*menu.training_data())
    rejection = clf.rejection
    assert rejection.source == "cross-validation" and rejection.score == "contrast"
    assert rejection.held_out == len(menu.training_data()[0]) - 7
    assert rejection.held_out_oos == 7
    assert 0.5 < rejection.estimated_in_scope_accuracy <= 1
    assert clf.predict("where's my parcel").label == "order_status"
    assert clf.predict("what's the best pizza topping").out_of_scope
    fixed = IntentClassifier(embedder, oos_threshold=0.3).fit(*menu.training_data())
    assert (fixed.rejection.source, fixed.rejection.threshold) == ("fixed", 0.3)
    assert fixed.held_out is None


def test_a_threshold_can_be_rechosen_for_another_score_without_refitting(menu, embedder):
    clf = IntentClassifier(embedder).fit(*menu.training_data())
    for name in ("probability", "margin", "nearest"):
        assert clf.recalibrate(name).score == name
        assert clf.predict("I was charged twice").score is not None
    with pytest.raises(ValueError, match="rejection_score"):
        clf.recalibrate("vibes")
    with pytest.raises(ValueError, match="oos_threshold"):
        IntentClassifier(embedder, oos_threshold="sometimes")


def test_many_intents_do_not_turn_good_answers_into_out_of_scope(embedder):
    """40 intents of 5 examples each, made from templates: the old fixed 0.3 probability
    rejects correct answers once the probability mass is spread; the calibrated rule keeps
    them."""
    things = ["invoice", "parcel", "password", "router", "voucher", "receipt", "contract",
              "warranty", "appointment", "subscription"]
    verbs = ["check", "change", "cancel", "report"]
    texts, labels = [], []
    for thing in things:
        for verb in verbs:
            for pattern in ("I want to {v} my {t}", "can you {v} the {t}", "{v} {t} please",
                            "I need to {v} my {t} today", "help me {v} a {t}"):
                texts.append(pattern.format(v=verb, t=thing))
                labels.append(f"{verb}_{thing}")
    calibrated = IntentClassifier(embedder).fit(texts, labels)
    fixed = IntentClassifier(embedder, oos_threshold=0.3).fit(texts, labels)
    said = [f"could you please {v} my {t} for me" for t in things for v in verbs]
    gold = [f"{v}_{t}" for t in things for v in verbs]
    right = sum(p.label == g for p, g in zip(calibrated.predict_many(said), gold))
    right_fixed = sum(p.label == g for p, g in zip(fixed.predict_many(said), gold))
    assert right >= right_fixed
    assert right >= 0.8 * len(said)


# -- augmentation -----------------------------------------------------------------------------

def test_spoken_rewrites_add_fillers_false_starts_and_whisper_numbers():
    variants = rewrites("transfer fifty dollars to my savings", random.Random(0))
    assert any(v.startswith(("Um,", "Uh,", "So,", "Yeah,", "Okay,", "Hi,", "Well,", "Hello,"))
               for v in variants)
    assert "transfer transfer fifty dollars to my savings" in variants
    assert "Transfer $50 to my savings." in variants
    assert whisper_numbers("book a table for two at seven thirty") == \
        "book a table for 2 at 7 30"
    texts, labels = augment(["pay 2 bills", "tell me a joke"], ["payment", OUT_OF_SCOPE],
                            skip={OUT_OF_SCOPE})
    assert labels.count(OUT_OF_SCOPE) == 1 and "pay two bills" in texts
    assert augment(["pay 2 bills"], ["payment"], seed=3) == augment(["pay 2 bills"],
                                                                    ["payment"], seed=3)


def test_an_augmented_classifier_still_routes_and_rejects(menu, embedder):
    clf = IntentClassifier(embedder, augment=True).fit(*menu.training_data())
    assert clf.predict("um, where's my parcel").label == "order_status"
    assert clf.predict("what's the best pizza topping").out_of_scope


# -- the menu author's check ------------------------------------------------------------------

def test_check_estimates_the_shipped_menu(menu, embedder):
    report = check_menu(menu, embedder)
    assert report.intents == 9 and report.oos_examples == 7
    assert 0.5 < report.estimated_accuracy <= 1
    assert report.estimated_oos_recall is not None
    assert report.rejection["source"] == "cross-validation"
    text = format_report(report)
    assert "estimated accuracy" in text and "out-of-scope recall" in text


def test_check_warns_about_close_intents_thin_intents_and_duplicates(menu, embedder):
    data = menu.model_dump()
    data["intents"].append({"name": "parcel_tracking", "examples": [
        "where is my order", "track my package", "has my parcel shipped",
        "where's my delivery", "my order hasn't arrived"]})
    data["intents"].append({"name": "gift_cards", "examples": ["buy a gift card"]})
    data["intents"] = [i for i in data["intents"] if i["name"] != OUT_OF_SCOPE]
    report = check_menu(MenuConfig.model_validate(data), embedder)
    pairs = [set(p["intents"]) for p in report.close_pairs]
    assert {"order_status", "parcel_tracking"} in pairs
    assert any(m["intent"] in ("order_status", "parcel_tracking") for m in report.misclassified)
    assert {"intent": "gift_cards", "examples": 1} in report.thin_intents
    assert report.duplicates and report.duplicates[0]["example"] == "where is my order"
    assert report.estimated_oos_recall is None
    assert any("no out_of_scope examples" in w for w in report.warnings)


def test_ivr_intents_check_command(tmp_path, embedder):
    done = subprocess.run([sys.executable, "-m", CLI, "intents", "check", MENU, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"estimated_accuracy", "estimated_oos_recall", "close_pairs", "misclassified",
            "warnings", "rejection"} <= set(result)
    with pytest.raises(OSError):  # what the command reports as "ivr intents check: ..."
        run(tmp_path / "nope.yaml", embedder)


# -- the richer eval --------------------------------------------------------------------------

def test_score_reports_oos_precision_and_the_confusion_pairs():
    gold = ["a", "a", "b", "b", OUT_OF_SCOPE, OUT_OF_SCOPE]
    predicted = ["b", "a", "a", OUT_OF_SCOPE, OUT_OF_SCOPE, "a"]
    result = score(gold, predicted)
    assert result["oos_recall"] == 0.5 and result["oos_precision"] == 0.5
    assert result["in_scope_accuracy"] == 0.25
    assert result["confusion_pairs"][0] == {"labels": ["a", "b"], "count": 2,
                                            "as": {"a -> b": 1, "b -> a": 1}}
    assert confusion_pairs(["x"], ["x"]) == []


def test_eval_reports_threshold_precision_and_pairs(menu, tmp_path, embedder):
    import csv

    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(*menu.training_data()))
    result = evaluate(train, TEST_CSV, embedder=embedder)
    assert {"accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "oos_precision",
            "oos_threshold", "rejection", "confusion_pairs",
            "median_ms_per_utterance"} <= set(result)
    assert result["rejection"]["source"] == "cross-validation"
    assert result["oos_threshold"] == round(result["rejection"]["threshold"], 4)
    assert result["accuracy"] >= 0.8 and result["oos_recall"] >= 0.75
    json.dumps(result)  # what the command prints
    fixed = evaluate(train, TEST_CSV, embedder=embedder, oos_threshold=0.3)
    assert (fixed["rejection"]["source"], fixed["oos_threshold"]) == ("fixed", 0.3)
