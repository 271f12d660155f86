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
