"""The `ivr` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from conftest import CALLS

IVR = [sys.executable, "-m", "voice.app.cli"]
KEYS = {"caller_text", "reply_text", "stages", "total_ms", "budget", "barge_in"}


def ivr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*IVR, *args], capture_output=True, text=True, timeout=300)


def test_simulate_prints_one_json_line_per_turn_and_writes_the_reply(tmp_path):
    out = tmp_path / "reply.wav"
    done = ivr("simulate", str(CALLS / "two_turns_8k.wav"), "--fast", "--handler", "echo",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    turns = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(turns) == 2
    for turn in turns:
        assert set(turn) >= KEYS
        assert turn["reply_text"].startswith("You said:")
        assert turn["budget"] == "ok" or turn["budget"].startswith(("overrun", "acknowledge"))
    with wave.open(str(out)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert np.abs(audio.astype(np.int32)).max() > 1000  # the replies are in it


def test_silence_is_a_clear_result_not_a_crash(tmp_path):
    path = tmp_path / "silence.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(bytes(8000 * 2 * 3))
    done = ivr("simulate", str(path), "--fast")
    assert done.returncode == 0 and done.stdout == ""
    assert "no caller speech detected" in done.stderr


def test_unreadable_or_missing_input_says_what_is_wrong(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00garbage")
    done = ivr("simulate", str(junk))
    assert done.returncode == 2 and "cannot read audio" in done.stderr
    done = ivr("simulate", str(tmp_path / "missing.wav"))
    assert done.returncode == 2 and "no such file" in done.stderr
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
    done = ivr("simulate", str(empty))
    assert done.returncode == 2 and "empty" in done.stderr


LOGGED_EXCEPTION = """
import sys
from voice.app import cli
from loguru import logger

getattr(cli, sys.argv[1])(False)

def answer(sdp_host):
    caller_secret = "4111" + "-local-value"  # not on a line the traceback shows
    return len(caller_secret + sdp_host) / 0

host = "host-" + "argument"
try:
    answer(host)
except ZeroDivisionError:
    logger.opt(exception=True).error("call x: answer failed")
"""


def test_a_logged_exception_never_prints_local_variables(tmp_path):
    """loguru's `diagnose` would annotate each traceback line with the values of the variables
    on it (caller data, secrets); both logging set-ups of the command line turn it off, even
    where the environment asks for it."""
    script = tmp_path / "fails.py"  # a file, so that the traceback can show its lines
    script.write_text(LOGGED_EXCEPTION)
    for setup in ("_serve_logs", "_quiet_logs"):
        done = subprocess.run([sys.executable, str(script), setup], cwd=Path.cwd(),
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "LOGURU_DIAGNOSE": "YES"})
        assert done.returncode == 0, done.stderr
        assert "answer failed" in done.stderr and "ZeroDivisionError" in done.stderr, setup
        assert "len(caller_secret + sdp_host) / 0" in done.stderr  # the code is shown
        assert "4111-local-value" not in done.stderr, done.stderr  # the values are not
        assert "host-argument" not in done.stderr, done.stderr
