"""Flow bundles, their diff, promotion and rollback with audit, the cohort file's checks and the
gate's scoring rules (no audio here; tests/test_eval_gate.py runs calls)."""

from __future__ import annotations

import hashlib
import json
import wave
from pathlib import Path

import pytest
import yaml

from intents.flows.bundle import BundleError, load_bundle, save_bundle, working_bundle
from intents.flows.cohort import CohortError, load_cohort
from intents.flows.diff import diff_bundles
from intents.flows.scoring import CallOutcome, Tolerances, check_call, compare, metrics
from voice.app.cli import main as ivr

COHORT = Path(__file__).resolve().parents[1] / "cohorts" / "retail_billing"


def broken(bundle, *, drop_examples: str | None = None, high: float | None = None):
    """A copy of ``bundle`` with one intent's examples cut to one, or the threshold raised."""
    menu = bundle.menu.model_copy(deep=True)
    if drop_examples:
        spec = menu.by_name(drop_examples)
        spec.examples = spec.examples[:1]
    if high is not None:
        menu.high_confidence = high
        for spec in menu.intents:
            spec.threshold = None
    return type(bundle)(version="", menu=menu, prompt=bundle.prompt, tools=bundle.tools,
                        models=bundle.models)


def test_a_bundle_round_trips_and_its_version_names_one_content(tmp_path):
    working = working_bundle()
    assert working.version.startswith(working.menu.version + "+")
    stored = save_bundle(working, tmp_path, "v1", note="first")
    assert stored.digest == working.digest and stored.version == "v1"
    assert load_bundle(tmp_path / "v1").menu == working.menu
    with pytest.raises(BundleError, match="exists already"):
        save_bundle(working, tmp_path, "v1")
    changed = broken(working, high=0.9)
    assert changed.digest != working.digest
    (tmp_path / "v1" / "menu.yaml").unlink()
    with pytest.raises(BundleError, match=r"v1/menu.yaml: missing"):
        load_bundle(tmp_path / "v1")


def test_the_diff_names_removed_examples_and_raised_thresholds():
    working = working_bundle()
    lines = diff_bundles(working, broken(working, drop_examples="refund", high=0.9))
    assert "threshold high_confidence: 0.55 -> 0.9" in lines
    assert "intent billing_question: threshold 0.5 -> None" in lines
    assert any(line.startswith("intent refund: 6 example(s) removed: 'how do I get a refund'")
               for line in lines)
    assert diff_bundles(working, working) == []


def test_speech_hints_are_part_of_the_bundle_and_its_diff():
    working = working_bundle()
    hinted = type(working)(version="", menu=working.menu.model_copy(
        update={"speech_hints": ["track my parcel", "pay my bill"]}), prompt=working.prompt,
        tools=working.tools, models=working.models)
    assert hinted.digest != working.digest  # a new prompt for ASR is a new version
    assert diff_bundles(working, hinted) == [
        f"speech hints: {working.menu.speech_hint()!r} -> 'Track my parcel, pay my bill.'"]
    # A menu that sets none digests as before the field existed: its stored evals still count.
    unset = working.menu.model_dump(mode="json")
    unset.pop("speech_hints")
    unset.pop("rejection_score")
    content = {"menu": unset, "prompt": working.prompt, "tools": working.tools,
               "models": working.models}
    assert working.digest == hashlib.sha256(
        json.dumps(content, sort_keys=True).encode()).hexdigest()


def test_the_rejection_score_is_the_menus_choice_and_part_of_its_bundle():
    """A menu may choose the score its out-of-scope threshold is set on; the choice is a new
    version, shows in the diff, and is what `ivr intents check` (and the served classifier)
    use."""
    from intents.check import check_menu
    from intents.classifier import IntentClassifier
    from models.registry import shared_registry

    embedder = shared_registry().embedder()
    working = working_bundle()
    assert working.menu.rejection_score is None and working.menu.classifier_options() == {}
    blend = type(working)(version="", menu=working.menu.model_copy(
        update={"rejection_score": "blend"}), prompt=working.prompt, tools=working.tools,
        models=working.models)
    assert blend.digest != working.digest
    assert diff_bundles(working, blend) == ["menu rejection_score: None -> blend"]
    assert check_menu(blend.menu, embedder).rejection["score"] == "blend"
    assert check_menu(working.menu, embedder).rejection["score"] == \
        IntentClassifier(embedder).rejection_score == "contrast"
    with pytest.raises(ValueError, match="rejection_score"):
        working.menu.model_validate({**working.menu.model_dump(), "rejection_score": "vibes"})


def _settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "ivr.yaml"
    path.write_text(yaml.safe_dump({"flows": {"bundles_dir": str(tmp_path / "flows"),
                                              "store_url": f"sqlite:///{tmp_path}/flows.db"}}))
    return path


def test_promotion_needs_a_passing_eval_or_a_forced_reason_and_is_audited(tmp_path, capsys):
    from voice.app.flowstore import FlowStore

    config = _settings_file(tmp_path)
    cli = lambda *a: ivr(["--config", str(config), *a])  # noqa: E731
    assert cli("flows", "snapshot", "--version", "v1") == 0
    assert cli("flows", "snapshot", "--version", "v2", "--note", "same content") == 0
    capsys.readouterr()
    assert cli("flows", "promote", "v1") == 1
    assert "refused: no passing eval run" in capsys.readouterr().err
    assert cli("flows", "promote", "v1", "--force") == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert cli("flows", "promote", "v1", "--force", "--reason", "hotfix", "--who", "ana") == 0
    store = FlowStore(f"sqlite:///{tmp_path}/flows.db")
    v2 = load_bundle(tmp_path / "flows" / "v2")
    run = store.save_eval(cohort="c", cohort_digest="d", candidate="v2",
                          candidate_digest=v2.digest, baseline="v1", baseline_digest="x",
                          passed=True, report={})
    assert cli("flows", "promote", "v2", "--who", "ben") == 0
    assert store.active().version == "v2"
    audit = store.audit()
    assert [(a["who"], a["version"], a["eval_run"], a["forced"]) for a in audit] == [
        ("ben", "v2", run, False), ("ana", "v1", None, True)]
    assert audit[1]["reason"] == "hotfix" and audit[0]["previous"] == "v1"
    # Rollback goes to the version before; refused clearly once its files are gone.
    import shutil

    shutil.rmtree(tmp_path / "flows" / "v1")
    capsys.readouterr()
    assert cli("flows", "rollback", "--reason", "spike in repeat calls") == 1
    err = capsys.readouterr().err
    assert "refused: cannot roll back to v1" in err and "its files are gone" in err
    assert store.active().version == "v2"
    assert cli("flows", "list") == 0
    assert "active: v2" in capsys.readouterr().out


@pytest.mark.slow  # trains the real classifier twice (MiniLM, cross-validated rejection)
def test_a_promotion_reaches_new_calls_and_calls_in_progress_keep_their_version(tmp_path):
    from voice.app.flow_follow import FlowFollower
    from voice.app.flowstore import FlowStore
    from voice.app.handlers import HandlerFactory
    from voice.app.settings import IvrSettings

    settings = IvrSettings.load(_settings_file(tmp_path),
                                call__crm_url=f"sqlite:///{tmp_path}/crm.db")
    factory = HandlerFactory(settings)
    store = FlowStore(settings.flows.store_url)
    follower = FlowFollower(settings, factory, store)
    first = factory.bundle.version
    in_progress = factory.new()
    assert follower.check() is False  # nothing promoted: the working files
    candidate = broken(factory.bundle, high=0.9)
    candidate.menu = candidate.menu.model_copy(update={"rejection_score": "blend"})
    strict = save_bundle(candidate, settings.flows.bundles_dir, "strict")
    store.set_active("strict", strict.digest, action="promote", reason="test", forced=True)
    assert follower.check() is True
    new = factory.new()
    assert new.state.flow_version == "strict" and new.menu.high_confidence == 0.9
    assert in_progress.state.flow_version == first
    assert in_progress.menu.high_confidence == 0.55
    # the menu's rejection score is the one its served classifier uses
    assert new.classifier.rejection.score == "blend"
    assert in_progress.classifier.rejection.score == "contrast"
    # A promoted version whose files changed afterwards is not taken.
    (tmp_path / "flows" / "strict" / "menu.yaml").write_text(
        (tmp_path / "flows" / "strict" / "menu.yaml").read_text().replace("0.9", "0.8"))
    store.set_active("strict", "0" * 64, action="promote", reason="t", forced=True)
    assert follower.check() is False and factory.new().state.flow_version == "strict"


def _cohort(tmp_path: Path, calls: str, audio: bool = True) -> Path:
    if audio:
        with wave.open(str(tmp_path / "hi.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
            w.writeframes(b"\x00\x01" * 8000)
    (tmp_path / "cohort.yaml").write_text("cohort: t\ncalls:\n" + calls)
    return tmp_path


def test_invalid_cohorts_are_refused_whole_naming_file_and_line(tmp_path):
    good = ("  - id: a\n    steps:\n      - say: hi.wav\n"
            "    expect: {intent: refund, route: returns}\n")
    assert len(load_cohort(_cohort(tmp_path, good)).calls) == 1
    missing = good + ("  - id: b\n    steps:\n      - say: hi.wav\n      - say: gone.wav\n"
                      "    expect: {intent: refund, route: returns}\n")
    with pytest.raises(CohortError) as error:
        load_cohort(_cohort(tmp_path, missing))
    assert f"{tmp_path}/cohort.yaml:10: call b: recording {tmp_path}/gone.wav is missing" \
        in str(error.value)
    invalid = good + "  - id: c\n    steps: [{say: hi.wav}]\n    expect: {route: x}\n"
    with pytest.raises(CohortError, match=r"cohort.yaml:9: calls.1.expect.intent: Field "
                                          "required"):
        load_cohort(_cohort(tmp_path, invalid))
    both = "  - id: d\n    steps:\n      - {say: hi.wav, keys: '1'}\n    expect: {intent: x, " \
           "route: y}\n"
    with pytest.raises(CohortError, match=r"cohort.yaml:5: .*either 'say"):
        load_cohort(_cohort(tmp_path, both))
    with pytest.raises(CohortError, match=r"cohort.yaml:4: not valid YAML"):
        load_cohort(_cohort(tmp_path, "  - id: [\n"))
    with pytest.raises(CohortError, match="intent 'refnd' is not in the menu"):
        load_cohort(_cohort(tmp_path, good.replace("refund", "refnd")), intents={"refund"})


def test_unreadable_audio_is_named_before_any_call_runs(tmp_path):
    from voice.app.eval import prepare

    calls = ("  - id: a\n    steps:\n      - say: hi.wav\n"
             "    expect: {intent: refund, route: returns}\n"
             "  - id: b\n    steps:\n      - say: noise.wav\n"
             "    expect: {intent: refund, route: returns}\n")
    (tmp_path / "noise.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    with pytest.raises(CohortError, match=r"cohort.yaml:9: call b: recording .*noise.wav "
                                          "cannot be read as audio"):
        prepare(load_cohort(_cohort(tmp_path, calls)))


def test_the_shipped_cohort_covers_the_menu_and_what_the_issue_asks_for():
    cohort = load_cohort(COHORT)
    menu = working_bundle().menu
    assert len(cohort.calls) >= 40
    assert {i.name for i in menu.intents} <= {c.expect.intent for c in cohort.calls}
    tags = {t for c in cohort.calls for t in c.tags}
    assert {"digits-spoken", "digits-keyed", "human", "out-of-scope", "frustrated",
            "real"} <= tags



def test_the_piper_cohort_is_the_shipped_calls_in_other_voices():
    """cohorts/retail_billing_piper (make_cohort.py --piper) is a diagnostic copy: the same
    calls, steps and expectations, other recordings of the synthesized callers."""
    shipped, piper = load_cohort(COHORT), load_cohort(COHORT.parent / "retail_billing_piper")
    assert [c.model_dump(exclude={"steps"}) for c in piper.calls] == \
        [c.model_dump(exclude={"steps"}) for c in shipped.calls]
    assert [[(s.say, s.keys) for s in c.steps] for c in piper.calls] == \
        [[(s.say, s.keys) for s in c.steps] for c in shipped.calls]
    sources = {name: yaml.safe_load((c.folder / "SOURCES.yaml").read_text())
               for name, c in (("shipped", shipped), ("piper", piper))}
    assert sources["shipped"].keys() == sources["piper"].keys()
    for name, shipped_source in sources["shipped"].items():
        synthesized = shipped_source["source"].startswith("espeak-ng")
        assert sources["piper"][name]["source"].startswith("piper") == synthesized, name
        assert sources["piper"][name]["snr_db"] == shipped_source["snr_db"], name


def test_scoring_counts_each_rate_and_the_gate_names_the_calls_that_changed(tmp_path):
    calls = load_cohort(_cohort(tmp_path, (
        "  - id: hours\n    steps: [{say: hi.wav}]\n"
        "    expect: {intent: opening_hours, route: contained, outcome: served, tools: [],"
        " must_say: [Monday]}\n"
        "  - id: refund\n    steps: [{say: hi.wav}]\n"
        "    expect: {intent: refund, route: returns}\n"))).calls
    good = {"hours": CallOutcome("hours", "opening_hours", "opening_hours", "contained",
                                 "served", said=["Monday to Friday"], latencies_ms=[900]),
            "refund": CallOutcome("refund", "refund", "refund", "returns", "transferred",
                                  latencies_ms=[800])}
    bad = {"hours": CallOutcome("hours", "opening_hours", "out_of_scope", "contained",
                                "unresolved", said=["I can help with"], latencies_ms=[950]),
           "refund": good["refund"]}
    for c in calls:
        check_call(c, good[c.id]), check_call(c, bad[c.id])
    assert metrics(calls, good)["task_completion"] == 1.0
    m = metrics(calls, bad)
    assert (m["task_completion"], m["intent_accuracy"], m["containment_self_service"],
            m["tool_accuracy"]) == (0.5, 0.5, 1.0, 1.0)
    assert compare(calls, good, good, Tolerances()).passed
    verdict = compare(calls, good, bad, Tolerances())
    assert not verdict.passed
    assert "task_completion fell from 100.0% to 50.0% (tolerance 3.0%)" in verdict.regressions
    assert [c["id"] for c in verdict.changed] == ["hours"] and verdict.changed[0]["got_worse"]
    assert "intent out_of_scope" in verdict.changed[0]["candidate"]
    # A completed call that fails on the candidate fails the gate even when the rates hold.
    lax = Tolerances(task_completion=1, intent_accuracy=1)
    assert compare(calls, good, bad, lax).regressions == [
        "1 call(s) the baseline completed fail on the candidate: hours"]
    assert compare(calls, good, bad, lax.model_copy(update={"max_worse_calls": None})).passed
    # A call a rerun did not reproduce is left out of both sides, and named.
    shaky = compare(calls, good, bad, Tolerances(), unstable={"hours"})
    assert shaky.passed and shaky.unstable == ["hours"] and shaky.changed == []
