"""Free-form answers: the LLM with the CRM tools, a bounded loop, and the facts check.

Used for what no flow covers. The LLM may call tools (OpenAI tool-calling API) at most
``max_tool_iterations`` times per turn; its final text is spoken only if every number, name and
claimed action in it is backed by what the tools returned (voice.guardrails). Otherwise the
caller hears the fallback, which never states a fact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voice.guardrails import violations
from voice.tools import AccountParams, CallbackParams, OpenCaseParams, OrderStatusParams, Tools

PROMPTS = Path(__file__).parent / "prompts"
TOOL_PARAMS = {"order_status": (OrderStatusParams, "Status, carrier and delivery date of an order."),
               "account_balance": (AccountParams, "Balance of an account."),
               "recent_charges": (AccountParams, "The latest charges on an account."),
               "open_case": (OpenCaseParams, "Open a case for a colleague to follow up."),
               "schedule_callback": (CallbackParams, "Book a call back to the caller.")}


def tool_schema() -> list[dict[str, Any]]:
    """The OpenAI tool definitions, from the tools' own parameter models."""
    return [{"type": "function", "function": {"name": name, "description": description,
                                              "parameters": params.model_json_schema()}}
            for name, (params, description) in TOOL_PARAMS.items()]


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
        self.schema = json.loads((PROMPTS / "tools-v1.json").read_text())

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
                result = self.tools.call(call.function.name, **arguments)
                calls.append({"tool": call.function.name, "arguments": arguments,
                              "ok": result.ok, "error": result.error})
                content = json.dumps(result.data if result.ok else {"error": result.error})
                facts.append(content)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
        return AgentAnswer(fallback, False, calls, ["tool-call limit reached"], self.version)
