"""Caller signals per utterance, for the escalation policy: frustration, asking for a human,
rephrasing an earlier request, profanity, and compliance keywords."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

_HUMAN = re.compile(r"\b(human|person|agent|operator|representative|somebody|someone real|"
                    r"real person|speak to (?:a|an|some)\w*|talk to (?:a|an|some)\w*)\b")
_FRUSTRATION = {"ridiculous": 0.5, "useless": 0.6, "stupid": 0.5, "angry": 0.6, "annoyed": 0.5,
                "frustrated": 0.6, "fed up": 0.7, "again": 0.2, "already told": 0.6,
                "third time": 0.7, "waste of time": 0.7, "unacceptable": 0.6, "terrible": 0.5,
                "not working": 0.2, "still": 0.15, "never": 0.2}
_PROFANITY = re.compile(r"\b(damn|hell|crap|shit\w*|fuck\w*|bloody|bastard|ass)\b")
_COMPLIANCE = re.compile(r"\b(lawyer|attorney|solicitor|sue|legal action|fraud\w*|scam|stolen|"
                         r"ombudsman|regulator|complaint|court|police|identity theft)\b")
# Cosine of MiniLM embeddings above which an utterance repeats an earlier request. Measured here:
# "Where is my order?" vs "My parcel still hasn't arrived" 0.47; vs "I want to pay my bill" 0.29.
REPHRASE_SIMILARITY = 0.42


@dataclass(frozen=True)
class Signals:
    asks_for_human: bool
    frustration: float  # 0..1
    profanity: bool
    compliance_keywords: tuple[str, ...]
    rephrase_of: int | None  # index of the earlier utterance this one repeats


@dataclass
class SignalTracker:
    """Per call: remembers earlier utterances to spot rephrasing."""

    embedder: object | None = None
    _history: list[np.ndarray] = field(default_factory=list)

    def observe(self, text: str, vector: np.ndarray | None = None) -> Signals:
        """Signals of one utterance; ``vector`` is its normalized embedding if already known."""
        lowered = text.lower()
        score = sum(w for phrase, w in _FRUSTRATION.items() if phrase in lowered)
        profane = bool(_PROFANITY.search(lowered))
        if profane:
            score += 0.4
        if text.isupper() and len(text) > 8:
            score += 0.3
        rephrase = None
        if vector is None and self.embedder is not None and text.strip():
            vector = np.asarray(self.embedder.encode([text], normalize_embeddings=True))[0]
        if vector is not None:
            for i, earlier in enumerate(self._history):
                if float(vector @ earlier) >= REPHRASE_SIMILARITY:
                    rephrase = i
            self._history.append(vector)
        return Signals(asks_for_human=bool(_HUMAN.search(lowered)),
                       frustration=min(1.0, score), profanity=profane,
                       compliance_keywords=tuple(sorted(set(_COMPLIANCE.findall(lowered)))),
                       rephrase_of=rephrase)
