"""The turn manager's CRM tools as LiveKit function tools.

For a LiveKit agent whose replies come from a general LLM rather than the turn manager, the
same typed tools (``intents.dialogue.tools``: pydantic-validated, honest about failure) are
offered with the schema generated from their own parameter models, so the two paths cannot
drift. A failed or refused call raises ``ToolError``: LiveKit hands its message to the LLM as
the tool's error output, so the model cannot claim what the CRM did not do.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import llm

from intents.dialogue.tools import Tools, tool_schema


def crm_function_tools(tools: Tools) -> list[llm.RawFunctionTool]:
    """One LiveKit ``RawFunctionTool`` per IVR tool, calling ``tools`` in a thread (CRM I/O)."""
    return [_function_tool(tools, spec["function"]) for spec in tool_schema()]


def _function_tool(tools: Tools, spec: dict[str, Any]) -> llm.RawFunctionTool:
    name = spec["name"]

    async def call(raw_arguments: dict[str, object]) -> dict[str, Any]:
        result = await asyncio.to_thread(tools.call, name, **raw_arguments)
        if not result.ok:
            raise llm.ToolError(result.error or f"{name} failed")
        return result.data or {}

    return llm.function_tool(call, raw_schema={"name": name, "description": spec["description"],
                                                "parameters": spec["parameters"]})
