"""The embedded LLM: an OpenAI-compatible llama.cpp server on loopback, as a subprocess.

Two servers load the same GGUF and speak the same OpenAI chat API (``models.llm_server`` setting):

- ``xllamacpp`` (the default): llama.cpp's own C++ server from a prebuilt wheel (installs in
  seconds; Jinja chat templates, so tool calls come back as ``tool_calls``);
- ``llama-cpp-python``: its Python server over the ctypes bindings; pip compiles llama.cpp when it
  installs it (minutes), so it is an optional extra (``pip install -e '.[llama-cpp-python]'``).

bench/llm_server.py measures one against the other.

A subprocess rather than in-process bindings: llama.cpp's threads then never compete with the
event loop for the GIL, a crash in native code cannot take the IVR down with it, and the turn
manager reaches it exactly as it would reach vLLM, Ollama or a hosted API: by URL.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Literal

from models.errors import ModelNotFound

HOST = "127.0.0.1"
DEFAULT_N_CTX = 2048
MODEL_ALIAS = "local"  # the model name clients send; the GGUF's file name is no concern of theirs
POLL_INTERVAL_S = 0.2
STOP_GRACE_S = 10.0
LOG_TAIL_CHARS = 2000

LlmServerKind = Literal["xllamacpp", "llama-cpp-python"]
DEFAULT_SERVER: LlmServerKind = "xllamacpp"
#: What to install when a server's package is missing.
INSTALL_HINTS = {"xllamacpp": "pip install xllamacpp",
                 "llama-cpp-python": "pip install 'llama-cpp-python[server]'"}


def free_port() -> int:
    """A loopback port nothing listens on now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_available(kind: LlmServerKind = DEFAULT_SERVER) -> bool:
    """Whether the package of server ``kind`` is installed (llama-cpp-python with its extra)."""
    try:
        if kind == "xllamacpp":
            import xllamacpp  # noqa: F401
        else:
            import llama_cpp.server.app  # noqa: F401
    except ImportError:
        return False
    return True


class EmbeddedLlmServer:
    """Starts and stops one OpenAI-compatible server process (``kind``) for one GGUF file."""

    def __init__(self, gguf_path: Path, port: int = 0, n_threads: int | None = None,
                 n_ctx: int = DEFAULT_N_CTX, kind: LlmServerKind = DEFAULT_SERVER) -> None:
        if not Path(gguf_path).is_file():
            raise ModelNotFound(f"LLM model file not found: {gguf_path}")
        if kind not in INSTALL_HINTS:
            raise ValueError(f"unknown LLM server {kind!r}: one of {', '.join(INSTALL_HINTS)}")
        self.kind = kind
        self.gguf_path = Path(gguf_path)
        self.port = port or free_port()
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_ctx = n_ctx
        self.base_url: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        if self.kind == "xllamacpp":
            return [sys.executable, "-m", "models.xllamacpp_server", "--model",
                    str(self.gguf_path), "--host", HOST, "--port", str(self.port),
                    "--n-ctx", str(self.n_ctx), "--threads", str(self.n_threads),
                    "--alias", MODEL_ALIAS]
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf_path),
                "--host", HOST, "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                "--n_threads", str(self.n_threads), "--model_alias", MODEL_ALIAS]

    def start(self, timeout_s: float = 60) -> str:
        """Start the server; returns its base URL once ``GET /v1/models`` answers.

        Raises RuntimeError (it exited) or TimeoutError (it never answered), with the tail of
        its output, which is where llama.cpp says what went wrong.
        """
        if self._process is not None and self.base_url:
            return self.base_url
        # Output goes to a file, not a pipe: a pipe nobody reads fills up and stalls the server.
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT)
        url = f"http://{HOST}:{self.port}/v1"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code, tail = self._process.returncode, self._tail()
                self.stop()
                hint = "" if server_available(self.kind) else (
                    f" ({self.kind} is not installed: {INSTALL_HINTS[self.kind]})")
                raise RuntimeError(f"the embedded LLM server ({self.kind}) exited with "
                                   f"{code}{hint}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=1) as response:
                    json.load(response)
                self.base_url = url
                return url
            except (OSError, ValueError):  # not listening yet, or answering before it is ready
                time.sleep(POLL_INTERVAL_S)
        tail = self._tail()
        self.stop()
        raise TimeoutError(f"the embedded LLM server did not answer in {timeout_s} s:\n{tail}")

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-LOG_TAIL_CHARS:]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Terminate the server, kill it if it lingers; idempotent."""
        process, self._process = self._process, None
        self.base_url = None
        if process is not None:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedLlmServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # a forgotten server must not outlive the IVR
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - a failure here must not end the call or the process
            pass
