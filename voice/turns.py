"""Moved to ``intents.dialogue``; kept importable while the restructure lands."""

from intents.dialogue.simple import EchoTurnHandler, LlmTurnHandler  # noqa: F401
from intents.dialogue.turns import (CallerTurn, CallInfo, Expect, Reply,  # noqa: F401
                                    TurnHandler)
