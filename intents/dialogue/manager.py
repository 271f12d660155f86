"""The turn manager: intent -> flow -> slots -> tools -> a reply built from the facts.

Templated replies carry the call on their own, because the embedded LLM is too weak to be trusted
with facts (it wrote a fluent, false summary of a sample call here). The flow asks for what it
needs, reads numbers back in digit groups for confirmation, calls typed tools, and never claims an
action the CRM did not confirm.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from dataclasses import dataclass
from datetime import date

from opentelemetry import trace

from intents.classifier import IntentClassifier
from intents.config import OUT_OF_SCOPE, MenuConfig
from intents.dialogue.agent import AgentAnswer, LlmAgent
from intents.dialogue.escalation import EscalationPolicy, TurnObservation
from intents.dialogue.guardrails import violations
from intents.dialogue.state import (
    ActionRecord,
    CallState,
    EscalationDecision,
    IntentRecord,
    TranscriptLine,
)
from intents.dialogue.tools import Crm, ToolResult, Tools
from intents.dialogue.turns import CallerTurn, CallInfo, Expect, Reply
from intents.entities import (
    CARD_MAX_DIGITS,
    CARD_MIN_DIGITS,
    YesNo,
    digit_groups,
    digit_string,
    is_complete_card,
    luhn_valid,
    yes_or_no,
)
from intents.llm_fallback import LlmFallback
from intents.policy import Action, Decision, MenuPolicy
from intents.redaction import SECRET_SLOT_KEY, SECRET_SLOTS, keypad_only, redact, redact_keyed
from intents.signals import Signals, SignalTracker

_tracer = trace.get_tracer("intents.dialogue")
GREETING = "Thanks for calling. How can I help you today?"
ANYTHING_ELSE = "Is there anything else I can help with?"
HOURS = "We're open Monday to Friday from 8 am to 8 pm, and Saturday from 9 am to 5 pm."
MAX_SLOT_TRIES = 2
KEY_IN_CARD = ("To pay it by card, key in the card number on your keypad, then press the hash "
               "key. Press star to cancel.")
# A card number the caller said before the flow asked for it arrives masked: "[card ending 1111]".
# What a preview may look up (see ``TurnManager.preview_turn``); every other tool writes.
READ_ONLY_TOOLS = frozenset({"order_status", "account_balance", "recent_charges"})
_CARD_SAID = re.compile(r"\[card ending \d{4}\]")


def spoken_date(day: date) -> str:
    return day.strftime("%A, %B ") + str(day.day)


class LlmPhraser:
    """Rewrites a templated reply more naturally through any OpenAI-compatible chat endpoint."""

    PROMPT = ("Rewrite the reply for a phone caller in one or two short sentences. Use only the "
              "facts given. Do not add numbers, names, dates or promises.")

    def __init__(self, base_url: str, timeout_s: float = 1.5, model: str = "local") -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(base_url=base_url, api_key="not-needed", timeout=timeout_s)
        self.model = model
        self.timeout_s = timeout_s

    async def rewrite(self, template: str, facts: dict) -> str | None:
        try:
            answer = await asyncio.wait_for(self.client.chat.completions.create(
                model=self.model, max_tokens=60, temperature=0.2, messages=[
                    {"role": "system", "content": self.PROMPT},
                    {"role": "user", "content": f"Facts: {facts}\nReply: {template}"}]),
                timeout=self.timeout_s)
        except Exception:  # noqa: BLE001 - late or unreachable: the template stands
            return None
        text = (answer.choices[0].message.content or "").strip()
        return text or None


@dataclass
class _Pending:
    """A value the flow is collecting: first heard, then confirmed."""

    slot: str
    heard: str | None = None
    tries: int = 0


class _PreviewStop(Exception):
    """A preview reached a step with side effects (a tool that writes): it makes no guess."""


class _PreviewTools:
    """The tools as a preview sees them: lookups pass, anything that writes stops it."""

    def __init__(self, tools: Tools) -> None:
        self._tools = tools

    def call(self, name: str, **arguments) -> ToolResult:
        if name not in READ_ONLY_TOOLS:
            raise _PreviewStop(name)
        return self._tools.call(name, **arguments)


class TurnManager:
    """One per call; implements the pipeline's TurnHandler protocol."""

    def __init__(self, menu: MenuConfig, classifier: IntentClassifier, crm: Crm,
                 embedder=None, phraser: LlmPhraser | None = None,
                 agent: LlmAgent | None = None,
                 escalation: EscalationPolicy | None = None,
                 fallback: LlmFallback | None = None) -> None:
        self.menu = menu
        self.classifier = classifier
        self.policy = MenuPolicy(menu, fallback)  # fallback: the LLM for the ambiguous band
        self.escalation = escalation or EscalationPolicy()
        self.tools = Tools(crm)
        self.crm = crm
        self.signals = SignalTracker(embedder)
        self.phraser = phraser
        self.agent = agent
        self.agent_answers: list[AgentAnswer] = []
        self.phrasings: list[dict] = []  # every LLM rewrite tried, accepted or not, and why
        self.state = CallState(call_id="", menu_version=menu.version)
        self.transcript: list[TranscriptLine] = []  # secrets redacted; for the handoff package
        self._pending: _Pending | None = None
        self._keyed = ""
        self._intent: str | None = None  # the intent of the flow in progress
        self._routed: tuple[str, str] | None = None  # (queue, reason) the flow chose this turn
        self._started = time.monotonic()
        self._turn = 0
        self._vectors: dict[str, object] = {}  # text -> embedding, shared with a preview
        classifier.warm_up()  # the first encoding is several times slower

    # -- TurnHandler -------------------------------------------------------------------------------

    async def start_call(self, call: CallInfo) -> Reply | None:
        self.state.call_id = call.call_id
        self.state.caller_number = call.caller_number
        self._started = time.monotonic()
        if call.caller_number:  # CRM I/O off the event loop, which carries every call's audio
            customer = await asyncio.to_thread(self.crm.customer_by_phone, call.caller_number)
            if customer is not None:
                self.state.customer_id, self.state.customer_name = customer.id, customer.name
        return self._said(Reply(text=GREETING))

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        started = time.perf_counter()
        self._turn, self._routed = turn.index, None
        asked_for = SECRET_SLOTS.get(self._pending.slot) if self._pending is not None else None
        text = redact(turn.text, asked_for=asked_for)
        self.transcript.append(TranscriptLine(turn=turn.index, speaker="caller", text=text))
        # One encoding for the intent and the signals, off the event loop (about 10 ms of CPU),
        # often done already by the preview of the same words.
        vector = self._vectors.get(text)
        if vector is None:
            vector = await asyncio.to_thread(self.classifier.embed, [text])
            if len(self._vectors) >= 4:
                self._vectors.clear()
            self._vectors[text] = vector
        signals = self.signals.observe(text, vector[0])
        self.state.signals.append({"turn": turn.index, **signals.__dict__})
        if signals.asks_for_human:  # a caller who asks for a human gets one, no argument
            decision = self._decide(turn, text, signals, request=True)
            return self._said(self._escalate(decision))
        in_slot = self._pending is not None
        records = len(self.state.intents)
        reply = await self._respond(turn, text, vector, started)
        record = self.state.intents[-1] if len(self.state.intents) > records else None
        decision = self._decide(turn, text, signals, request=not in_slot or record is not None,
                                record=record)
        if decision.escalate and self._routed != (decision.queue, decision.reason):
            # The policy overrides the flow: a hold that should end, or a compliance matter
            # that goes to its own queue rather than the one the intent named.
            nlu_ms = reply.nlu_ms
            # A compliance matter is not the caller's patience running out: no apology for it.
            reply = self._escalate(decision, apology=not decision.signals["compliance_keywords"])
            reply.nlu_ms = nlu_ms
        return self._said(reply)

    @property
    def speech_hint(self) -> str | None:
        """The ASR prompt while the caller may say anything: the menu's words."""
        return self.menu.speech_hint()

    async def preview_turn(self, turn: CallerTurn) -> str | None:
        """The text ``handle_turn`` would answer now, without side effects: the turn is played
        on a copy of this call's state, lookups are made, and a step that would write (a case,
        a callback) or ask an LLM gives no guess."""
        if self.agent is not None or self.phraser is not None or self.policy.fallback is not None:
            return None
        shadow = copy.copy(self)
        shadow.state = copy.deepcopy(self.state)
        shadow.signals = copy.copy(self.signals)
        shadow.signals._history = list(self.signals._history)
        shadow.policy = copy.copy(self.policy)
        shadow.transcript = list(self.transcript)
        shadow._pending = copy.deepcopy(self._pending)
        shadow.tools = _PreviewTools(self.tools)
        try:
            reply = await shadow.handle_turn(turn)
        except _PreviewStop:
            return None
        return reply.text if reply is not None else None

    async def _respond(self, turn: CallerTurn, text: str, vector, started: float) -> Reply:
        """The flow's answer to one turn (the escalation policy has the last word)."""
        if self._pending is not None:
            reply = await asyncio.to_thread(self._continue_slot, text)  # may call the CRM
            if reply is not None:
                return await self._phrase(reply)
        prediction = self.classifier.predict_vectors(vector, started, texts=[text])[0]
        decision = await self.policy.decide_async(prediction, text)
        nlu_ms = (time.perf_counter() - started) * 1000
        self.state.intents.append(IntentRecord(
            turn.index, text, prediction.label, round(prediction.confidence, 3),
            [(n, round(p, 3)) for n, p in prediction.alternatives], decision.action.value,
            decision.reason))
        if decision.action == Action.ROUTE and decision.intent is not None:
            self._intent = decision.intent.name
        if decision.action == Action.MENU and self.agent is not None:
            # Nothing in the menu fits: the LLM may answer, with tools, if its answer passes.
            answer = await self.agent.answer(text, fallback=decision.prompt or "")
            self.agent_answers.append(answer)
            self.state.actions += [ActionRecord(c["tool"], c["arguments"], c["ok"], None,
                                                c["error"]) for c in answer.tool_calls]
            if answer.accepted:
                return Reply(text=f"{answer.text} {ANYTHING_ELSE}", nlu_ms=nlu_ms)
        reply = await asyncio.to_thread(self._act, decision, turn)  # may call the CRM
        reply.nlu_ms = nlu_ms
        return await self._phrase(reply)

    async def handle_dtmf(self, digits: str) -> Reply | None:
        if self._pending is not None and keypad_only(self._pending.slot):
            reply = None
            for key in digits:  # one key per event from the pipeline; a string from a test
                reply = self._key_secret(key) or reply
                if self._pending is None or not keypad_only(self._pending.slot):
                    break
            return self._said(reply)
        if self._pending is not None:  # keyed digits fill the slot; '#' ends the entry
            if digits != "#":
                self._keyed += digits
                return None
            keyed, self._keyed = self._keyed, ""
            self._keyed_line(redact_keyed(keyed, asked_for=SECRET_SLOTS.get(self._pending.slot)))
            reply = await asyncio.to_thread(self._continue_slot, keyed)
            return self._said(reply or Reply(text="Sorry, I didn't get that."))
        self._keyed_line(redact_keyed(digits))
        self._routed = None
        decision = self.policy.from_dtmf(digits)
        if decision.intent is not None:  # the digit says the intent as surely as words would
            self._intent = decision.intent.name
            self.state.intents.append(IntentRecord(self._turn, f"[keyed {digits}]",
                                                   decision.intent.name, 1.0, [],
                                                   decision.action.value, decision.reason))
        reply = await asyncio.to_thread(self._act, decision, None)
        if self._routed is not None:  # a keyed menu choice that routes is a verdict too
            self._decide(None, "", Signals(False, 0.0, False, (), None), request=True)
        return self._said(reply)

    async def end_call(self, reason: str) -> None:
        return None

    # -- escalation --------------------------------------------------------------------------------

    def _decide(self, turn: CallerTurn | None, text: str, signals: Signals, *, request: bool,
                record: IntentRecord | None = None) -> EscalationDecision:
        """Ask the escalation policy about this turn; the verdict is kept in the state."""
        intent = self._intent
        if intent is None and record is not None and record.label != OUT_OF_SCOPE:
            intent = record.label
        spec = self.menu.by_name(intent) if intent else None
        queue = spec.route.target if spec is not None and spec.route is not None and \
            spec.route.kind == "queue" else None
        elapsed = time.monotonic() - self._started
        if turn is not None:  # the caller's position in the stream is call time, replayable
            elapsed = max(elapsed, turn.speech_end_s)
        return self.escalation.decide(self.state, TurnObservation(
            turn=turn.index if turn is not None else self._turn, text=text, signals=signals,
            elapsed_s=elapsed, request=request, intent=intent,
            confidence=record.confidence if record is not None else None, intent_queue=queue,
            routed_queue=self._routed[0] if self._routed else None,
            routed_reason=self._routed[1] if self._routed else None))

    def _escalate(self, decision: EscalationDecision, apology: bool = False) -> Reply:
        """Hand the caller over as the policy decided; whatever the flow was collecting stops."""
        self._pending, self._keyed = None, ""
        reply = self._to_queue(decision.queue or "general", decision.reason, None)
        if apology:
            reply.text = f"I'm sorry about the trouble. {reply.text}"
        return reply

    def _said(self, reply: Reply | None) -> Reply | None:
        if reply is not None and reply.text:
            self.transcript.append(TranscriptLine(turn=self._turn, speaker="ivr",
                                                  text=redact(reply.text)))
        return reply

    def _keyed_line(self, keyed: str) -> None:
        self.transcript.append(TranscriptLine(turn=self._turn, speaker="caller",
                                              text=f"[keyed {keyed}]"))

    # -- decisions ---------------------------------------------------------------------------------

    def _act(self, decision: Decision, turn: CallerTurn | None) -> Reply:
        if decision.action == Action.CLARIFY or decision.action == Action.MENU:
            return Reply(text=decision.prompt or "")
        if decision.action == Action.ESCALATE:
            return self._to_queue("general", decision.reason, turn)
        intent = decision.intent
        route = intent.route if intent is not None else None
        if route is None:
            return Reply(text=self.policy.menu_prompt())
        if route.kind == "queue":
            return self._to_queue(route.target, f"{intent.name.replace('_', ' ')} is handled by "
                                  f"the {route.target.replace('_', ' ')} team", turn)
        return self._self_service(route.target, turn)

    def _to_queue(self, queue: str, reason: str, turn: CallerTurn | None) -> Reply:
        self.state.route = queue
        self.state.escalation_reason = reason
        self._routed = (queue, reason)
        team = "a colleague" if queue == "general" else f"our {queue.replace('_', ' ')} team"
        return Reply(text=f"I'll connect you with {team} now. Please hold.", transfer_to=queue)

    def _self_service(self, flow: str, turn: CallerTurn | None) -> Reply:
        if flow == "order_status":
            self._pending = _Pending("order_number")
            return Reply(text="Sure. What's your order number? You can say it or key it in.",
                         expect=Expect.DIGITS,
                         expect_length=self.menu.slot_lengths.get("order_number"))
        if flow == "opening_hours":
            return Reply(text=f"{HOURS} {ANYTHING_ELSE}")
        if flow == "payment":  # "I'd like to pay by card": the balance, then the keypad
            return self._balance(offer_card=turn is not None and
                                 re.search(r"\bcard\b", turn.text, re.I) is not None)
        if flow == "address_change":
            result = self._tool("open_case", subject="Address change requested by phone",
                                customer_id=self.state.customer_id)
            if not result.ok:
                return self._tool_failed("open an address change request")
            return Reply(text=f"I've opened an address change request, reference number "
                              f"{digit_groups(str(result.data['case_id']))}. A colleague will "
                              f"confirm the new address with you. {ANYTHING_ELSE}")
        return self._to_queue("general", f"no self-service flow {flow!r}", turn)

    # -- slots -------------------------------------------------------------------------------------

    def _continue_slot(self, text: str) -> Reply | None:
        pending = self._pending
        assert pending is not None
        if keypad_only(pending.slot):  # speech reached us anyway (a transport without the pause)
            return self._secret_not_by_voice(pending)
        if pending.heard is not None:  # waiting for yes/no on a number read back
            answer = yes_or_no(text)
            corrected = digit_string(text, min_digits=4)
            if answer == YesNo.YES and not corrected:
                value, self._pending = pending.heard, None
                self.state.slots[pending.slot] = value
                return self._use_slot(pending.slot, value)
            if corrected:
                pending.heard = corrected
                return self._read_back(pending)
            if answer == YesNo.NO:
                pending.heard = None
                return Reply(text="Sorry about that. Please say the number again, digit by digit.",
                             expect=Expect.DIGITS,
                             expect_length=self.menu.slot_lengths.get(pending.slot))
            return Reply(text=f"Was that {digit_groups(pending.heard)}? Please say yes or no.",
                         expect=Expect.YES_NO)
        digits = digit_string(text, min_digits=4)  # masked markers are never read as digits
        if digits is None:
            pending.tries += 1
            if pending.tries > MAX_SLOT_TRIES:
                self._pending = None
                return self._to_queue("general", f"could not get the {pending.slot}", None)
            if _CARD_SAID.search(text):
                what = pending.slot.replace("_", " ")
                return Reply(text=f"That sounded like a card number, and I don't need it. "
                                  f"Please say the {what}, digit by digit, or key it in "
                                  f"followed by the hash key.", expect=Expect.DIGITS,
                                  expect_length=self.menu.slot_lengths.get(pending.slot))
            if len(text.split()) > 6 and pending.tries == 1:
                return None  # a new request, not an answer: let the classifier have it
            return Reply(text="I didn't catch a number. Please say the order number, digit by "
                              "digit, or key it in followed by the hash key.",
                         expect=Expect.DIGITS,
                         expect_length=self.menu.slot_lengths.get(pending.slot))
        pending.heard = digits
        return self._read_back(pending)

    def _read_back(self, pending: _Pending) -> Reply:
        what = pending.slot.replace("_", " ")
        # The comma makes "I heard order number," the reply's opening clause, synthesized
        # alone (about 90 ms here against 160 ms with the first digits): heard sooner.
        return Reply(text=f"I heard {what}, {digit_groups(pending.heard or '')}. Is that right?",
                     expect=Expect.YES_NO)

    def _use_slot(self, slot: str, value: str) -> Reply:
        if slot != "order_number":
            return Reply(text=ANYTHING_ELSE)
        result = self._tool("order_status", order_number=value)
        if not result.ok:
            return self._tool_failed("look that order up")
        data = result.data or {}
        if not data.get("found"):
            return Reply(text=f"I couldn't find an order numbered {digit_groups(value)}. "
                              f"{ANYTHING_ELSE}")
        return Reply(text=f"{self._order_sentence(data)} {ANYTHING_ELSE}",
                     metadata={"facts": data})

    @staticmethod
    def _order_sentence(data: dict) -> str:
        number = digit_groups(data["order_number"])
        eta = date.fromisoformat(data["eta"]) if data.get("eta") else None
        status, carrier = data["status"], data.get("carrier")
        if status == "delivered":
            return f"Order {number} has been delivered."
        if status == "processing":
            return f"Order {number} is being prepared and hasn't shipped yet."
        line = f"Order {number} is {status}"
        if carrier:
            line += f" with {carrier}"
        if eta:
            line += f", and should arrive on {spoken_date(eta)}"
        return line + "."

    def _balance(self, offer_card: bool = False) -> Reply:
        if self.state.customer_id is None:
            return self._to_queue("billing", "balance asked by an unidentified caller", None)
        accounts = self.crm.account_numbers(self.state.customer_id)
        account = accounts[0] if accounts else None
        if account is None:
            return self._to_queue("billing", "no account for the caller", None)
        result = self._tool("account_balance", account_number=account)
        if not result.ok or not (result.data or {}).get("found"):
            return self._tool_failed("read your balance")
        cents = result.data["balance_cents"]
        balance = f"Your balance is {cents // 100} dollars and {cents % 100} cents."
        if offer_card and cents > 0:
            return self._ask_keyed_secret("card_number", f"{balance} {KEY_IN_CARD}")
        return Reply(text=f"{balance} {ANYTHING_ELSE}")

    # -- secrets by keypad -------------------------------------------------------------------------

    def _ask_keyed_secret(self, slot: str, text: str) -> Reply:
        """Ask for a keypad-only secret: the reply names the slot, and the pipeline stops
        transcribing the caller until a reply no longer does."""
        if self._pending is None or self._pending.slot != slot:
            self._pending = _Pending(slot)
        self._keyed = ""
        return Reply(text=text, expect=Expect.DIGITS, metadata={SECRET_SLOT_KEY: slot})

    def _secret_not_by_voice(self, pending: _Pending) -> Reply:
        pending.tries += 1
        if pending.tries > MAX_SLOT_TRIES:
            return self._stop_keyed_secret(pending, "could not take the card number by keypad")
        return self._ask_keyed_secret(pending.slot, "For your security, please use your keypad "
                                      "for the card number, not your voice, then press the "
                                      "hash key. Press star to cancel.")

    def _key_secret(self, key: str) -> Reply | None:
        """One key of a card number: '*' cancels, '#' or a complete card number ends it.
        The digits live only in ``_keyed`` until the entry ends; only a masked marker is kept."""
        pending = self._pending
        assert pending is not None
        if key == "*":
            self._pending, self._keyed = None, ""
            self._keyed_line("[card entry cancelled]")
            return Reply(text=f"All right, no card payment for now. {ANYTHING_ELSE}")
        if key != "#":
            self._keyed += key
            if not is_complete_card(self._keyed) and len(self._keyed) < CARD_MAX_DIGITS:
                return None
        keyed, self._keyed = self._keyed, ""
        secret = SECRET_SLOTS[pending.slot]
        masked = redact_keyed(keyed, asked_for=secret)
        self._keyed_line(masked)
        if not (CARD_MIN_DIGITS <= len(keyed) <= CARD_MAX_DIGITS and luhn_valid(keyed)):
            pending.tries += 1
            if pending.tries > MAX_SLOT_TRIES:
                return self._stop_keyed_secret(pending, "the keyed card number did not check out")
            return self._ask_keyed_secret(pending.slot, "That card number didn't check out. "
                                          "Please key it again, then press the hash key.")
        self._pending = None
        self.state.slots[pending.slot] = masked  # "[card ending 1111]": never the number
        last_four = " ".join(masked[-5:-1])
        # No payment tool exists here: a colleague takes the payment, and the IVR says so.
        reply = self._to_queue("billing", f"card payment: {masked} keyed in", None)
        reply.text = f"Thank you, I have the card ending {last_four}. {reply.text}"
        self._decide(None, "", Signals(False, 0.0, False, (), None), request=True)
        return reply

    def _stop_keyed_secret(self, pending: _Pending, reason: str) -> Reply:
        self._pending, self._keyed = None, ""
        reply = self._to_queue("billing", reason, None)
        self._decide(None, "", Signals(False, 0.0, False, (), None), request=True)
        return reply

    async def _phrase(self, reply: Reply) -> Reply:
        """Let the LLM rewrite a factual reply, if one is configured; keep it only if it passes."""
        facts = reply.metadata.get("facts")
        if self.phraser is None or not facts or reply.text is None:
            return reply
        facts_text = f"{reply.text} " + " ".join(f"{k}={v}" for k, v in facts.items())
        rewrite = await self.phraser.rewrite(reply.text, facts)
        confirmed = {a.tool for a in self.state.actions if a.ok}
        problems = ["no answer in time"] if rewrite is None else \
            violations(rewrite, facts_text, confirmed)
        self.phrasings.append({"template": reply.text, "llm": rewrite, "accepted": not problems,
                               "problems": problems})
        if not problems and rewrite:
            reply.text = rewrite
        return reply

    # -- tools -------------------------------------------------------------------------------------

    def _tool(self, name: str, **arguments) -> ToolResult:
        # A child of the turn's span when journey traces are on; a no-op span otherwise.
        with _tracer.start_as_current_span(f"tool {name}", attributes={"tool.name": name}) \
                as span:
            result = self.tools.call(name, **arguments)
            span.set_attribute("tool.ok", result.ok)
        self.state.actions.append(ActionRecord(name, arguments, result.ok, result.data,
                                               result.error))
        return result

    def _tool_failed(self, what: str) -> Reply:
        return Reply(text=f"I'm sorry, I couldn't {what} just now: our system didn't answer. "
                          "I can connect you with a colleague, or you can try again later.")
