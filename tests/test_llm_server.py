"""The embedded LLM server choice (models.llm_server), and the default server answering the two
OpenAI requests the IVR sends it: a streamed reply and a request carrying the CRM tools."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.config import ModelSettings
from models.llm_server import EmbeddedLlmServer, server_available
from models.registry import shared_registry


def test_an_unknown_server_is_refused_with_the_choices(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="xllamacpp, llama-cpp-python"):
        EmbeddedLlmServer(gguf, kind="ollama")
    with pytest.raises(ValidationError, match="llm_server"):
        ModelSettings(llm_server="ollama")
    assert ModelSettings().llm_server == "xllamacpp"


def test_the_default_server_is_installed_by_the_package():
    assert server_available("xllamacpp")


@pytest.mark.slow
def test_the_server_streams_a_reply_and_takes_the_agents_tool_request():
    """xllamacpp; llama-cpp-python (optional, compiled) is run beside it by bench/llm_server.py."""
    from openai import OpenAI

    from intents.dialogue.tools import tool_schema

    with EmbeddedLlmServer(shared_registry().llm_gguf_path(), kind="xllamacpp") as server:
        client = OpenAI(base_url=server.base_url, api_key="none", timeout=300)
        assert [m.id for m in client.models.list().data] == ["local"]
        stream = client.chat.completions.create(
            model="local", max_tokens=12, temperature=0, stream=True,
            messages=[{"role": "user", "content": "Say hello to the caller."}])
        pieces = [c.choices[0].delta.content for c in stream
                  if c.choices and c.choices[0].delta.content]
        assert len(pieces) > 1 and "".join(pieces).strip()
        reply = client.chat.completions.create(
            model="local", max_tokens=12, temperature=0, tools=tool_schema(),
            messages=[{"role": "user", "content": "Where is my order?"}])
        message = reply.choices[0].message
        # SmolLM2's chat template has no tools section: it answers in text. A tool call, from
        # a model that makes them, must name one of our tools.
        assert (message.content or "").strip() or message.tool_calls
        names = {t["function"]["name"] for t in tool_schema()}
        assert all(call.function.name in names for call in message.tool_calls or [])
