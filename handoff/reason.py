"""Why the caller called, in their own words: the most informative part of what they said.

Extractive and rule-based, so it needs no LLM and cannot invent anything: the caller's turns
(already redacted) are cut into clauses; fillers, greetings, hedges ("I think"), secrets
(``[card ending 1234]`` and the words that introduce them), requests for a person and complaints
about the machine are dropped; each remaining clause is scored by its content words, with extra
weight for words a contact centre acts on (charged, twice, order, arrived, refund...) and for
the items on the caller's own CRM card. The best sentence is the quote; a second one from
another turn is added when it brings new content (a caller who gives the detail in a later
turn). Nothing is paraphrased: every word of the quote was said, in that order, within a clause.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from intents.redaction import redact

MAX_WORDS = 28  # a quote an agent reads in a breath; longer sentences keep their best clauses

# Said to fill time, never part of the reason.
_FILLERS = re.compile(r"\b(?:u+m+|u+h+m*|e+r+m*|h+m+|m+h*m+|a+h+|you know|i mean)\b,?\s*", re.I)
# Openers and hedges stripped from the start of a clause, repeatedly ("Hi, yeah, so I think...").
_OPENERS = re.compile(
    r"^(?:hi|hello|hey|yes|yeah|yep|(?:no|nope)(?=[,.!]|$)|okay|ok|so|well|right|oh|please|"
    r"thanks|thank you|"
    r"good (?:morning|afternoon|evening)|and|but|also|actually|basically|just|i think(?: that)?|"
    r"i guess|i believe|it seems(?: like)?|i'm (?:calling|ringing) because|"
    r"i'm (?:calling|ringing) to (?:say|tell you)(?: that)?)\b[,.!]?\s*", re.I)
# A redaction marker, with the words that introduce it: "with my card [card ending 1234]".
_SECRET = re.compile(r"(?:\b(?:with|on|using|from|is|was|it's)\s+)?(?:\bmy\s+)?"
                     r"(?:\b(?:card|visa|mastercard|amex|debit card|credit card|pin|cvv|"
                     r"password|security code|social(?: security)?)\s+)?(?:number\s+)?"
                     r"(?:is\s+|was\s+)?\[[^\]]*\]", re.I)
# Asking for a person: the escalation already says so; it is not why they called.
_HUMAN = re.compile(r"\b(?:human|person|agent|operator|representative|somebody|someone|"
                    r"anybody|anyone|(?:speak|talk) to (?:a|an|some)\w*)\b", re.I)
# Where a clause turns into a request for a person: "..., so let me talk to someone".
_REQUEST_SPLIT = re.compile(r"\s+(?=(?:so|and|but|now|just)\s+(?:can|could|let|get|put|"
                            r"connect|transfer|i want|i'd like|i need)\b)", re.I)
# Words about the call or the machine, not about the caller's matter.
_META = {"useless", "ridiculous", "stupid", "robot", "machine", "bot", "computer", "help",
         "talk", "speak", "calling", "call", "ringing", "connect", "transfer", "put", "through",
         "listen", "listening", "understand", "waste", "time", "hate", "annoying", "terrible",
         "joke", "seriously", "please", "want", "need", "like", "know", "get", "let", "told",
         "good", "enough", "fine", "great", "sure", "thing", "things", "way", "honestly"}
_STOPWORDS = set(["a", "about", "above", "after", "again", "against", "all", "am", "an", "and",
                  "any", "are", "aren't", "as", "at", "be", "because", "been", "before", "being",
                  "below", "between", "both", "but", "by", "can", "can't", "cannot", "could",
                  "couldn't", "did", "didn't", "do", "does", "doesn't", "doing", "don't", "down",
                  "during", "each", "few", "for", "from", "further", "had", "hadn't", "has",
                  "hasn't", "have", "haven't", "having", "he", "he'd", "he'll", "he's", "her",
                  "here", "here's", "hers", "herself", "him", "himself", "his", "how", "how's", "i",
                  "i'd", "i'll", "i'm", "i've", "if", "in", "into", "is", "isn't", "it", "it's",
                  "its", "itself", "let's", "me", "more", "most", "mustn't", "my", "myself", "no",
                  "nor", "not", "of", "off", "on", "once", "only", "or", "other", "ought", "our",
                  "ours", "ourselves", "out", "over", "own", "same", "she", "she'd", "she'll",
                  "she's", "should", "shouldn't", "so", "some", "such", "than", "that", "that's",
                  "the", "their", "theirs", "them", "themselves", "then", "there", "there's",
                  "these", "they", "they'd", "they'll", "they're", "they've", "this", "those",
                  "through", "to", "too", "under", "until", "up", "very", "was", "wasn't", "we",
                  "we'd", "we'll", "we're", "we've", "were", "weren't", "what", "what's", "when",
                  "when's", "where", "where's", "which", "while", "who", "who's", "whom", "why",
                  "why's", "with", "won't", "would", "wouldn't", "you", "you'd", "you'll", "you're",
                  "you've", "your", "yours", "yourself", "yourselves", "yes", "yeah", "okay", "ok",
                  "hi", "hello", "hey", "oh", "well", "right", "just", "really", "actually", "also",
                  "got", "get", "gets", "going", "go"])
# What a contact centre acts on; prefixes, so "charged", "charges" and "overcharged" all count.
_CUES = re.compile(
    r"^(?:over)?(?:charg|twice|doubl|duplic|bill|invoic|statement|fee|refund|return|money|"
    r"order|package|parcel|deliver|arriv|ship|track|late|delay|miss|lost|damag|broke|wrong|"
    r"cancel|subscri|contract|membership|account|pay|paid|balanc|owe|card|price|amount|dollar|"
    r"cent|internet|router|device|app|login|log|error|work|address|moved|plan|upgrad|receiv|"
    r"never|same|again|still|item|product|week|month|yesterday|today|recogni|unauthori|"
    r"password|reset|locked|outage|signal|screen|stolen|fraud)", re.I)
_WORD = re.compile(r"[A-Za-z][A-Za-z']*|\d+(?:[.,]\d+)?")


@dataclass(frozen=True)
class CallerReason:
    """The caller's reason as they said it: the quote and the caller turns it comes from."""

    quote: str
    turns: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Sentence:
    turn: int
    order: int  # position in the call, to put two quotes back in the order they were said
    text: str
    score: float
    words: frozenset[str]


def clean_clause(text: str) -> str:
    """A clause without secrets, fillers, openers and hedges; may come back empty."""
    text = _SECRET.sub(" ", redact(text))
    text = _FILLERS.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip(" ,;:-")
    previous = None
    while previous != text:
        previous, text = text, _OPENERS.sub("", text).strip(" ,;:-")
    return text


def _content(words: Iterable[str]) -> list[str]:
    return [w for w in words if w not in _STOPWORDS and w not in _META and not w.isdigit()]


def clause_score(clause: str, extra_cues: frozenset[str] = frozenset()) -> float:
    """How much a clause says about the caller's matter: content words, cue words count three
    times; a clause that only asks for a person or complains about the machine scores 0."""
    words = [w.lower() for w in _WORD.findall(clause)]
    content = _content(words)
    cues = [w for w in content if _CUES.match(w) or w in extra_cues]
    if _HUMAN.search(clause) and not cues:
        return 0.0
    numbers = sum(1 for w in words if w[0].isdigit())
    return len(content) + 2 * len(cues) + min(numbers, 1)


def _clauses(text: str) -> list[str]:
    """Sentences of an utterance, each as its clauses (split at commas and at a request)."""
    parts = []
    for sentence in re.split(r"(?<=[.?!;])\s+", text.strip()):
        pieces = [p for chunk in re.split(r",\s+", sentence) for p in _REQUEST_SPLIT.split(chunk)]
        parts.append(pieces)
    return ["\x00".join(p) for p in parts]  # clauses of one sentence, kept together


def _sentences(transcript: Sequence[tuple[int, str]], routed: set[str],
               extra_cues: frozenset[str]) -> list[_Sentence]:
    found: list[_Sentence] = []
    for order, (turn, text) in enumerate(transcript):
        if text.startswith("[keyed"):
            continue
        bonus = 2.0 if text in routed else 0.0  # the words the intent was recognised from
        for joined in _clauses(text):
            question = joined.rstrip().endswith("?")
            scored = [(c, clause_score(c, extra_cues))
                      for c in (clean_clause(part) for part in joined.split("\x00"))]
            top = max((points for _, points in scored), default=0.0)
            # Asides far weaker than the sentence's main clause are dropped (condensing).
            kept = [(c, p) for c, p in scored if p >= max(2.0, 0.25 * top)]
            if not kept:
                continue
            score = sum(p for _, p in kept)
            words = sum(len(c.split()) for c, _ in kept)
            while words > MAX_WORDS and len(kept) > 1:  # condense: drop the weakest clause
                weakest = min(range(len(kept)), key=lambda i: kept[i][1])
                score -= kept[weakest][1]
                words -= len(kept[weakest][0].split())
                del kept[weakest]
            quote = ", ".join(c.rstrip(".?!") for c, _ in kept)
            tokens = quote.split()
            if len(tokens) > MAX_WORDS:
                quote = " ".join(tokens[:MAX_WORDS]) + "..."
            quote = quote[0].upper() + quote[1:] + ("" if quote.endswith("...")
                                                    else "?" if question else ".")
            found.append(_Sentence(turn, order, quote, score + bonus,
                                   frozenset(_content(w.lower() for w in _WORD.findall(quote)))))
    return found


def caller_reason(transcript: Sequence[tuple[int, str]], *, routed_texts: Iterable[str] = (),
                  extra_cues: Iterable[str] = ()) -> CallerReason | None:
    """The caller's reason from their turns ``(turn, text)``, or None if they gave none (a keyed
    menu choice, only asking for a person). ``routed_texts`` are the utterances the intent was
    recognised from; ``extra_cues`` words that matter for this caller (items on their CRM card).
    """
    cues = frozenset(w.lower() for w in extra_cues)
    sentences = _sentences(transcript, set(routed_texts), cues)
    if not sentences:
        return None
    best = max(sentences, key=lambda s: (s.score, -s.order))
    chosen = [best]
    words = len(best.text.split())
    for other in sorted(sentences, key=lambda s: (-s.score, s.order)):
        new = other.words - best.words
        if other is best or other.turn == best.turn or len(new) < 2:
            continue
        if other.score >= 0.6 * best.score and words + len(other.text.split()) <= MAX_WORDS + 6:
            chosen.append(other)
        break  # only the runner-up is considered: a third quote is no longer a summary
    chosen.sort(key=lambda s: s.order)
    return CallerReason(" ".join(s.text for s in chosen), sorted({s.turn for s in chosen}))
