"""The embedded LLM: llama-cpp-python's OpenAI-compatible server on loopback, as a subprocess.

A subprocess rather than in-process bindings: llama.cpp's threads then never compete with the
event loop for the GIL, and the turn manager reaches it exactly as it would reach vLLM, Ollama or
a hosted API, by URL.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedLlmServer:
    """Starts and stops ``python -m llama_cpp.server`` for one GGUF file."""

    def __init__(self, gguf_path: Path, port: int = 0, n_threads: int | None = None,
                 n_ctx: int = 2048) -> None:
        if not Path(gguf_path).is_file():
            raise FileNotFoundError(f"LLM model file not found: {gguf_path}")
        self.gguf_path = Path(gguf_path)
        self.port = port or free_port()
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_ctx = n_ctx
        self.base_url: str | None = None
        self._process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    def start(self, timeout_s: float = 60) -> str:
        """Start the server; returns its base URL once ``/v1/models`` answers."""
        if self._process is not None:
            return self.base_url or ""
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf_path),
                   "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                   "--n_threads", str(self.n_threads), "--model_alias", "local"]
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the embedded LLM server exited ({self._process.returncode}):"
                                   f"\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=1) as response:
                    json.load(response)
                self.base_url = url
                return url
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the embedded LLM server did not answer in {timeout_s} s:\n"
                           f"{self._tail()}")

    def _tail(self, n: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-n:]

    def stop(self) -> None:
        """Terminate the server (idempotent)."""
        process, self._process = self._process, None
        self.base_url = None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedLlmServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
