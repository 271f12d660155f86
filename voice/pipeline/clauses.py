"""Where a reply is cut for synthesis: its opening clause alone, then sentence by sentence.

Piper takes about 25 ms per word here, so a short opening clause is heard sooner. The speak stage
cuts replies this way; what is kept or prepared as audio for a reply (the inference client's
phrase cache, a speculative first clause) must be cut the same way to match it.
"""

from __future__ import annotations

import re

from pipecat.utils.string import match_endofsentence

_CLAUSE = re.compile(r"[,:;]\s")
_MIN_CLAUSE_WORDS = 2


def first_clause_end(text: str, sentence_end: int) -> int:
    """End of the opening clause of ``text`` if it closes before the sentence does."""
    match = _CLAUSE.search(text)
    if match is None or (sentence_end and match.start() >= sentence_end):
        return sentence_end
    if len(text[: match.start()].split()) < _MIN_CLAUSE_WORDS:
        return sentence_end
    return match.start() + 1


def spoken_pieces(text: str) -> list[str]:
    """The pieces ``SpeakStage`` synthesizes one by one for the complete reply ``text``: its
    opening clause, then each sentence (what a worker keeps as audio must match them)."""
    pieces, pending = [], text
    while end := (match_endofsentence(pending) if pieces else
                  first_clause_end(pending, match_endofsentence(pending))):
        pieces.append(pending[:end].strip())
        pending = pending[end:]
    pieces.append(pending.strip())
    return [piece for piece in pieces if piece]
