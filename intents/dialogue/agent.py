"""Free-form answers: the LLM with the CRM tools, a bounded loop, and the facts check.

Used for what no flow covers. The LLM may call tools (OpenAI tool-calling API) at most
``max_tool_iterations`` times per turn; its final text is spoken only if every number, name and
claimed action in it is backed by what the tools returned (intents.dialogue.guardrails). Otherwise
the caller hears the fallback, which never states a fact.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from intents.dialogue.guardrails import violations
from intents.dialogue.tools import Tools, tool_schema

PROMPTS = Path(__file__).parent / "prompts"


@dataclass
class AgentAnswer:
    text: str
    accepted: bool  # False: the fallback was spoken
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    prompt_version: str = ""


class LlmAgent:
    def __init__(self, client, tools: Tools, model: str = "local",
                 prompt_file: Path = PROMPTS / "turn_manager-v1.yaml") -> None:
        prompt = yaml.safe_load(prompt_file.read_text())
        self.client = client  # an openai.AsyncOpenAI
        self.tools = tools
        self.model = model
        self.system = prompt["system"]
        self.version = prompt["version"]
        self.max_iterations = int(prompt["max_tool_iterations"])
        self.schema = tool_schema()

    async def answer(self, question: str, fallback: str) -> AgentAnswer:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system},
                                          {"role": "user", "content": question}]
        calls: list[dict[str, Any]] = []
        facts: list[str] = []
        for _ in range(self.max_iterations + 1):
            response = await self.client.chat.completions.create(
                model=self.model, messages=messages, tools=self.schema, max_tokens=80,
                temperature=0)
            message = response.choices[0].message
            if not message.tool_calls:
                text = (message.content or "").strip()
                problems = violations(text, " ".join(facts) + " " + question,
                                      {c["tool"] for c in calls if c["ok"]}) if text else \
                    ["empty answer"]
                if problems:
                    return AgentAnswer(fallback, False, calls, problems, self.version)
                return AgentAnswer(text, True, calls, [], self.version)
            if len(calls) >= self.max_iterations:
                break
            messages.append({"role": "assistant", "content": message.content or "",
                             "tool_calls": [c.model_dump() for c in message.tool_calls]})
            for call in message.tool_calls:
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                except json.JSONDecodeError:
                    arguments = {}
                result = await asyncio.to_thread(self.tools.call, call.function.name,
                                                 **arguments)
                calls.append({"tool": call.function.name, "arguments": arguments,
                              "ok": result.ok, "error": result.error})
                content = json.dumps(result.data if result.ok else {"error": result.error})
                facts.append(content)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
        return AgentAnswer(fallback, False, calls, ["tool-call limit reached"], self.version)
