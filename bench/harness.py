"""Real processes for SIP tests and benchmarks: `ivr serve`, sipp, the pjsua2 peer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SIPP = shutil.which("sipp")
#: The API token every test server is configured with (``server.api_tokens``): /api/calls and
#: /api/handoffs need one.
API_TOKEN = "test-api-token"


def free_port() -> int:
    """A port free for both UDP and TCP on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                    tcp.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


class IvrProcess:
    """`ivr serve` in its own process, with its own config, store and log."""

    def __init__(self, workdir: Path, config: dict, *, extra_args: list[str] | None = None):
        self.workdir = workdir
        self.sip_port = free_port()
        self.http_port = free_port()
        config = {**config}
        config.setdefault("server", {})
        config["server"].setdefault("store_url", f"sqlite:///{workdir / 'ivr.sqlite'}")
        config["server"].setdefault("spool_dir", str(workdir / "spool"))
        config["server"].setdefault("api_tokens", [API_TOKEN])
        config.setdefault("sip", {})
        config["sip"].setdefault("rtp_port", 20000 + (self.sip_port % 20000))
        self.config_path = workdir / "ivr.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "ivr.log"
        self.args = [PYTHON, "-m", "voice.app.cli", "--config", str(self.config_path), "serve",
                     "--host", "127.0.0.1", "--sip-port", str(self.sip_port),
                     "--http-port", str(self.http_port), *(extra_args or [])]
        self.proc: subprocess.Popen | None = None
        self.stdout_lines: list[str] = []  # what the server printed after "ready"

    @property
    def uri(self) -> str:
        return f"sip:+18005550100@127.0.0.1:{self.sip_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def start(self, timeout_s: float = 180.0) -> IvrProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if "ivr serve: ready" in line:
                # Keep reading: a pipe nobody reads fills up and blocks whoever writes to it.
                threading.Thread(target=self._drain_stdout, name="ivr-stdout",
                                 daemon=True).start()
                return self
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"ivr serve did not start:\n{self.log()}")

    def _drain_stdout(self) -> None:
        for line in self.proc.stdout:
            self.stdout_lines.append(line)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def get(self, path: str):
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}",
                                         headers={"Authorization": f"Bearer {API_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())

    def calls(self, limit: int = 50) -> list[dict]:
        return self.get(f"/api/calls?limit={limit}")

    def wait_call(self, predicate, timeout_s: float = 30.0) -> dict:
        """The newest call matching ``predicate`` once it has ended (its record is final)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for call in self.calls():
                if predicate(call) and call["ended_at"]:
                    return call
            time.sleep(0.3)
        raise AssertionError(f"no ended call matched; calls: {self.calls()}\n{self.log()[-3000:]}")

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9
        finally:
            self._log.close()


def run_sipp(scenario_xml: str, target: str, workdir: Path, *, name: str = "scenario",
             calls: int = 1, concurrent: int = 1, local_ip: str = "127.0.0.1",
             timeout_s: int = 60, extra: list[str] | None = None,
             background: bool = False):
    """Run sipp as a UAC against ``target``; returns the CompletedProcess (or Popen)."""
    path = workdir / f"{name}.xml"
    path.write_text(scenario_xml)
    args = [SIPP, "-sf", str(path), "-m", str(calls), "-l", str(concurrent), "-r", "10",
            "-i", local_ip, "-mi", local_ip, "-p", str(free_port()), "-mp", str(free_port()),
            "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin",
            "-trace_err", "-error_file", str(workdir / f"{name}.errors"), *(extra or []),
            target]
    if background:
        return subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(args, cwd=workdir, capture_output=True, text=True,
                          timeout=timeout_s + 30)


def run_peer(args: list[str], *, timeout_s: float = 120.0, background: bool = False):
    """The pjsua2 peer (``python -m voice.transports.sip.caller``); returns its JSON result."""
    cmd = [PYTHON, "-m", "voice.transports.sip.caller", *args]
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise AssertionError(f"peer printed no result (rc {done.returncode}):\n{done.stderr}")
    return json.loads(lines[-1])


def peer_result(proc: subprocess.Popen, timeout_s: float = 120.0) -> dict:
    out, err = proc.communicate(timeout=timeout_s)
    lines = [ln for ln in out.splitlines() if ln.startswith("{") and '"event"' not in ln]
    if not lines:
        raise AssertionError(f"peer printed no result (rc {proc.returncode}):\n{err}")
    return json.loads(lines[-1])
