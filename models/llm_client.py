"""The one way this project makes an OpenAI-compatible chat client.

Every LLM the IVR talks to (the embedded SmolLM2 server on loopback, vLLM, llama.cpp server,
Ollama, a hosted API) is reached over the OpenAI chat API by URL. Local servers take any key;
a hosted API's key comes from ``OPENAI_API_KEY`` or the caller.
"""

from __future__ import annotations

import os

import openai

DEFAULT_TIMEOUT_S = 30.0


def _key(api_key: str | None) -> str:
    return api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"


def chat_client(base_url: str, *, api_key: str | None = None,
                timeout_s: float = DEFAULT_TIMEOUT_S, max_retries: int = 0) -> openai.AsyncOpenAI:
    """An async client for the turn path. No retries by default: a late answer is worth less
    than the latency budget's template reply."""
    return openai.AsyncOpenAI(base_url=base_url, api_key=_key(api_key), timeout=timeout_s,
                              max_retries=max_retries)


def sync_chat_client(base_url: str, *, api_key: str | None = None,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> openai.OpenAI:
    """A blocking client, for command-line checks outside any event loop."""
    return openai.OpenAI(base_url=base_url, api_key=_key(api_key), timeout=timeout_s,
                         max_retries=0)
