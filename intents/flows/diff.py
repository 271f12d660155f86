"""A readable difference of two flow bundles: what an operator must check before promoting.

Lines read like a change log: intents added or removed, examples added or removed, routes,
DTMF digits and thresholds changed, prompt and tool changes, model choices.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from intents.config import IntentSpec
from intents.flows.bundle import FlowBundle

_MENU_SETTINGS = ("high_confidence", "low_confidence", "llm_fallback", "llm_fallback_timeout_s",
                  "slot_lengths", "rejection_score")


def _route(spec: IntentSpec) -> str:
    return f"{spec.route.kind}:{spec.route.target}" if spec.route else "none"


def diff_bundles(a: FlowBundle, b: FlowBundle) -> list[str]:
    """What changes from ``a`` to ``b``; empty when they behave alike."""
    out: list[str] = []
    if a.menu.version != b.menu.version:
        out.append(f"menu version: {a.menu.version} -> {b.menu.version}")
    for name in _MENU_SETTINGS:
        old, new = getattr(a.menu, name), getattr(b.menu, name)
        if old != new:
            out.append(f"threshold {name}: {old} -> {new}" if "confidence" in name
                       else f"menu {name}: {old} -> {new}")
    if a.menu.speech_hint() != b.menu.speech_hint():  # what ASR is primed with, in effect
        out.append(f"speech hints: {a.menu.speech_hint()!r} -> {b.menu.speech_hint()!r}")
    old_intents = {i.name: i for i in a.menu.intents}
    new_intents = {i.name: i for i in b.menu.intents}
    for name in sorted(old_intents.keys() - new_intents.keys()):
        out.append(f"intent removed: {name} ({len(old_intents[name].examples)} examples)")
    for name in sorted(new_intents.keys() - old_intents.keys()):
        spec = new_intents[name]
        out.append(f"intent added: {name} (route {_route(spec)}, dtmf {spec.dtmf}, "
                   f"{len(spec.examples)} examples)")
    for name in sorted(old_intents.keys() & new_intents.keys()):
        out += _intent_changes(old_intents[name], new_intents[name])
    out += _text_changes("prompt", a.prompt, b.prompt)
    out += _tool_changes(a.tools, b.tools)
    for key in sorted(a.models.keys() | b.models.keys()):
        if a.models.get(key) != b.models.get(key):
            out.append(f"model {key}: {a.models.get(key)} -> {b.models.get(key)}")
    return out


def _intent_changes(old: IntentSpec, new: IntentSpec) -> list[str]:
    out = []
    if _route(old) != _route(new):
        out.append(f"intent {old.name}: route {_route(old)} -> {_route(new)}")
    if old.dtmf != new.dtmf:
        out.append(f"intent {old.name}: dtmf {old.dtmf} -> {new.dtmf}")
    if old.threshold != new.threshold:
        out.append(f"intent {old.name}: threshold {old.threshold} -> {new.threshold}")
    if old.description != new.description:
        out.append(f"intent {old.name}: description changed")
    gone = [e for e in old.examples if e not in new.examples]
    added = [e for e in new.examples if e not in old.examples]
    if gone:
        out.append(f"intent {old.name}: {len(gone)} example(s) removed: "
                   + "; ".join(repr(e) for e in gone))
    if added:
        out.append(f"intent {old.name}: {len(added)} example(s) added: "
                   + "; ".join(repr(e) for e in added))
    return out


def _text_changes(what: str, old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    a = json.dumps(old, indent=1, sort_keys=True).splitlines()
    b = json.dumps(new, indent=1, sort_keys=True).splitlines()
    lines = [f"  {line}" for line in difflib.unified_diff(a, b, lineterm="", n=0)
             if not line.startswith(("---", "+++", "@@"))]
    return [f"{what} changed:", *lines]


def _tool_changes(old: list[dict], new: list[dict]) -> list[str]:
    names = lambda tools: {t.get("function", {}).get("name"): t for t in tools}  # noqa: E731
    a, b = names(old), names(new)
    out = [f"tool removed: {n}" for n in sorted(a.keys() - b.keys())]
    out += [f"tool added: {n}" for n in sorted(b.keys() - a.keys())]
    for n in sorted(a.keys() & b.keys()):
        if a[n] != b[n]:
            out += _text_changes(f"tool {n}", a[n], b[n])
    return out
