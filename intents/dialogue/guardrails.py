"""Checks an LLM-written reply against the facts before it is spoken.

The check lives in ``intents.dialogue.facts_check`` because the handoff summary (which may not
import ``voice``) needs the same rule; this module keeps the name the voice side uses.
"""

from __future__ import annotations

from intents.dialogue.facts_check import violations

__all__ = ["violations"]
