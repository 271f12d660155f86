"""One settings object: YAML file, then environment overrides, validated with clear messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from voice.app.settings import IvrSettings


def test_yaml_then_environment(tmp_path, monkeypatch):
    path = tmp_path / "ivr.yaml"
    path.write_text("turn:\n  confirm_silence_ms: 500\nmodels:\n  asr_model: base\n")
    monkeypatch.setenv("IVR_TURN__CONFIRM_SILENCE_MS", "420")
    settings = IvrSettings.load(path)
    assert settings.turn.confirm_silence_ms == 420  # the environment wins
    assert settings.models.asr_model == "base"  # from the file
    assert settings.budget.total_ms == 900  # default


def test_a_wrong_field_is_named(tmp_path):
    path = tmp_path / "ivr.yaml"
    path.write_text("vad:\n  webrtcvad_mode: 7\n")
    with pytest.raises(ValidationError, match="webrtcvad_mode"):
        IvrSettings.load(path)
    path.write_text("turn:\n  confirm_silence: 300\n")  # misspelt: refused, not ignored
    with pytest.raises(ValidationError, match="confirm_silence"):
        IvrSettings.load(path)


def test_overrides_by_section():
    settings = IvrSettings.load(None, call__handler="llm")
    assert settings.call.handler == "llm"


def test_call_limits_moved_from_sip_still_work_under_their_old_names(monkeypatch):
    """sip.max_call_s and friends are call.* now; old YAML keys and IVR_SIP__* variables still
    set them, with a deprecation warning."""
    import warnings

    from voice.app.settings import IvrSettings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = IvrSettings(sip={"max_silence_s": 7, "goodbye_silence": "Bye."})
    assert settings.call.max_silence_s == 7 and settings.call.goodbye_silence == "Bye."
    assert any("sip.max_silence_s is now call.max_silence_s" in str(w.message) for w in caught)
    monkeypatch.setenv("IVR_SIP__MAX_CALL_S", "99")
    assert IvrSettings().call.max_call_s == 99
    assert IvrSettings(call={"max_call_s": 5}).call.max_call_s == 5  # the new name as ever
