"""The turn manager with the real classifier, a real SQLite CRM and real ASR."""

from __future__ import annotations

import re

import pytest
from conftest import CALLS

from handoff.crm import DEMO_ORDER, DEMO_PHONE, CrmStore, Customer, seed
from intents.config import load_menu
from intents.dialogue.manager import TurnManager
from intents.dialogue.tools import Tools
from intents.dialogue.turns import CallerTurn, CallInfo, Expect
from models.registry import shared_registry
from voice.app.simulate import simulate_call


def manager(crm, classifier) -> TurnManager:
    return TurnManager(load_menu(), classifier, crm, shared_registry().embedder())


def turn(i: int, text: str) -> CallerTurn:
    return CallerTurn(call_id="t", index=i, text=text)


def test_seed_is_deterministic_and_holds_the_demo_caller(tmp_path, crm):
    other = CrmStore(f"sqlite:///{tmp_path}/again.sqlite")
    seed(other, customers=200)
    assert other.count(Customer) == crm.count(Customer) == 201
    assert other.order(DEMO_ORDER) == crm.order(DEMO_ORDER)
    assert crm.customer_by_phone("+1 (555) 000-0001").name == "Alex Morgan"
    with pytest.raises(ValueError, match="already has customers"):
        seed(crm, customers=1)


def test_tools_validate_arguments_and_report_failures_honestly(crm, tmp_path):
    tools = Tools(crm)
    assert not tools.call("order_status", order_number="12").ok  # not six digits
    found = tools.call("order_status", order_number=DEMO_ORDER)
    assert found.ok and found.data["carrier"] == "UPS"
    broken = Tools(CrmStore(f"sqlite:///{tmp_path}/x.sqlite"))
    broken.crm.engine.dispose()
    (tmp_path / "x.sqlite").unlink()
    (tmp_path / "x.sqlite").mkdir()  # the database is gone: the next query fails
    failed = broken.call("order_status", order_number=DEMO_ORDER)
    assert failed.ok is False and failed.error


async def test_order_status_flow_reads_back_and_answers_from_the_crm(crm, classifier):
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("t", caller_number=DEMO_PHONE))
    ask = await tm.handle_turn(turn(1, "Hi, where is my order?"))
    assert ask.expect == Expect.DIGITS and "order number" in ask.text
    readback = await tm.handle_turn(turn(2, "four five six seven one two"))
    assert readback.text == "I heard order number, 4 5 6, 7 1 2. Is that right?"
    answer = await tm.handle_turn(turn(3, "Yes."))
    assert "UPS" in answer.text and "Tuesday, November 24" in answer.text
    assert tm.state.slots["order_number"] == DEMO_ORDER
    assert [a.tool for a in tm.state.actions] == ["order_status"]
    assert tm.state.customer_name == "Alex Morgan"


async def test_a_wrong_readback_is_corrected_and_keyed_digits_work(crm, classifier):
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("t"))
    await tm.handle_turn(turn(1, "I want to track my package"))
    await tm.handle_turn(turn(2, "4 5 6 7 1 3"))
    fixed = await tm.handle_turn(turn(3, "No, it's 4 5 6 7 1 2"))
    assert "4 5 6, 7 1 2" in fixed.text
    tm2 = manager(crm, classifier)
    await tm2.start_call(CallInfo("t"))
    keyed = await tm2.handle_dtmf("1")  # the legacy digit for order status
    assert keyed.expect == Expect.DIGITS
    for digit in DEMO_ORDER:
        assert await tm2.handle_dtmf(digit) is None
    assert "4 5 6, 7 1 2" in (await tm2.handle_dtmf("#")).text


async def test_asking_for_a_human_gets_one_at_once(crm, classifier):
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("t"))
    reply = await tm.handle_turn(turn(1, "this is useless, let me talk to a real person"))
    assert "connect you" in reply.text and tm.state.route == "general"


async def test_a_card_number_never_reaches_the_state_in_clear(crm, classifier):
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("t"))
    await tm.handle_turn(turn(1, "I want to pay with card 4111 1111 1111 1234"))
    assert "4111" not in str(tm.state.to_dict()) and "1234" in str(tm.state.to_dict())


async def test_a_masked_card_is_never_read_back_as_an_order_number(crm, classifier):
    """Whisper's "4,111,..." once came back as "I heard order number 4 1 1, ..."."""
    for heard in ("It's 4,111,111,111,111,111,111,111,111,111,111,1.",
                  "four one one one, one one one one, one one one one, one one one one",
                  "[card ending 1111]"):  # already masked upstream: the marker is no number
        tm = manager(crm, classifier)
        await tm.start_call(CallInfo("t"))
        await tm.handle_turn(turn(1, "where is my order"))
        reply = await tm.handle_turn(turn(2, heard))
        assert "card number" in reply.text and "I heard" not in reply.text, reply.text
        assert reply.expect == Expect.DIGITS and "order_number" not in tm.state.slots
        assert "1 1 1" not in reply.text and "4111" not in str(tm.state.to_dict())
        readback = await tm.handle_turn(turn(3, "4 5 6 7 1 2"))  # the real order number
        assert readback.text == "I heard order number, 4 5 6, 7 1 2. Is that right?"
        assert all("1111111" not in line.text for line in tm.transcript)


async def ask_for_card(crm, classifier) -> tuple[TurnManager, object]:
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("t", caller_number=DEMO_PHONE))
    return tm, await tm.handle_turn(turn(1, "I'd like to pay my bill by card"))


async def test_a_card_is_asked_for_by_keypad_and_kept_only_masked(crm, classifier):
    from intents.redaction import SECRET_SLOT_KEY

    tm, ask = await ask_for_card(crm, classifier)
    assert "42 dollars and 50 cents" in ask.text and "keypad" in ask.text
    assert ask.metadata[SECRET_SLOT_KEY] == "card_number" and ask.expect == Expect.DIGITS
    card = "4111111111111111"
    replies = [await tm.handle_dtmf(key) for key in card]
    # No '#' needed: the 16th key completes a Luhn-valid Visa number.
    assert replies[:-1] == [None] * 15 and "card ending 1 1 1 1" in replies[-1].text
    assert SECRET_SLOT_KEY not in replies[-1].metadata  # the keypad entry is over
    assert tm.state.slots["card_number"] == "[card ending 1111]"
    assert tm.state.route == "billing" and "card ending 1111" in tm.state.escalation_reason
    kept = str(tm.state.to_dict()) + " ".join(line.text for line in tm.transcript)
    assert card not in kept and "41111" not in kept and tm._keyed == ""


async def test_keyed_card_entry_ends_with_hash_retries_and_cancels(crm, classifier):
    from intents.redaction import SECRET_SLOT_KEY

    tm, _ = await ask_for_card(crm, classifier)
    await tm.handle_dtmf("4111111111111112")  # one key wrong: fails the Luhn check
    retry = await tm.handle_dtmf("#")
    assert "didn't check out" in retry.text and retry.metadata[SECRET_SLOT_KEY] == "card_number"
    said = await tm.handle_turn(turn(2, "it's 4111 1111 1111 1111"))  # spoken anyway
    assert "keypad" in said.text and said.metadata[SECRET_SLOT_KEY] == "card_number"
    assert "4111" not in " ".join(line.text for line in tm.transcript)
    done = await tm.handle_dtmf("4222222222222#")  # a 13-digit Visa ends with '#'
    assert "card ending 2 2 2 2" in done.text
    assert tm.state.slots["card_number"] == "[card ending 2222]"
    cancelled, _ = await ask_for_card(crm, classifier)
    await cancelled.handle_dtmf("41")
    stop = await cancelled.handle_dtmf("*")
    assert "no card payment" in stop.text and SECRET_SLOT_KEY not in stop.metadata
    assert cancelled._pending is None and "card_number" not in cancelled.state.slots


@pytest.mark.slow
async def test_a_recorded_caller_gets_their_order_status_end_to_end(settings, crm, classifier):
    tm = manager(crm, classifier)
    result = await simulate_call(CALLS / "order_status_8k.wav", settings, handler=tm,
                                 call_info=CallInfo("e2e", caller_number=DEMO_PHONE))
    replies = [t.reply_text for t in result.turns]
    assert len(result.turns) == 3, [(t.caller_text, t.reply_text, t.barge_in, t.reply_interrupted, t.speech_start_s, t.speech_end_s) for t in result.turns]
    assert "order number" in replies[0]
    assert replies[1] == "I heard order number, 4 5 6, 7 1 2. Is that right?"
    assert "shipped with UPS" in replies[2] and "November 24" in replies[2]
    assert tm.state.intents[0].label == "order_status"


def synthetic_caller(lines: list[tuple[str, float]]):
    """A caller made of Piper sentences through the phone channel, each followed by a pause."""
    import numpy as np
    from piper import SynthesisConfig

    from voice.audio import AudioChunk, telephone_channel

    voice = shared_registry().piper_voice()
    still = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    parts = [np.zeros(4000, np.int16)]
    for text, pause_s in lines:
        audio = np.concatenate([c.audio_int16_array for c in voice.synthesize(text, still)])
        phone = telephone_channel(AudioChunk(audio, voice.config.sample_rate)).samples
        parts += [phone, np.zeros(int(8000 * pause_s), np.int16)]
    return AudioChunk(np.concatenate(parts), 8000)


@pytest.mark.slow
async def test_spoken_audio_out_of_scope_then_menu_then_escalation(settings, crm, classifier):
    caller = synthetic_caller([("What's the weather going to be like on Saturday?", 9.0),
                               ("Can you recommend a good film to watch?", 6.0)])
    tm = manager(crm, classifier)
    result = await simulate_call(caller, settings, handler=tm, realtime=False)
    assert [i.decision for i in tm.state.intents] == ["menu", "escalate"]
    assert "press 1" in result.turns[0].reply_text
    assert tm.state.route == "general"


@pytest.mark.slow
async def test_spoken_audio_in_the_middle_band_gets_one_clarifying_question(settings, crm,
                                                                            classifier):
    strict = load_menu().model_copy(update={"high_confidence": 0.99})
    for intent in strict.intents:
        intent.threshold = None  # everything short of a certainty is asked about
    tm = TurnManager(strict, classifier, crm)
    caller = synthetic_caller([("I have a problem with a charge and want my money back.", 5.0)])
    result = await simulate_call(caller, settings, handler=tm, realtime=False)
    assert tm.state.intents[0].decision == "clarify"
    first, second = (n for n, _ in tm.state.intents[0].alternatives[:2])
    assert {first, second} <= {"refund", "billing_question", "payment"}
    assert result.turns[0].reply_text.startswith("Is that about")


async def test_a_keypad_tone_in_the_audio_routes_like_the_spoken_request(settings, crm,
                                                                          classifier):
    """In-band DTMF (no RFC 4733): pressing 1 starts the same flow as 'where is my order'."""
    import numpy as np
    from test_policy_signals_dtmf import tone

    from voice.audio import AudioChunk, mulaw_decode, mulaw_encode

    keyed = np.concatenate([np.zeros(4000, np.int16), tone("1", 8000, 0.12),
                            np.zeros(8000 * 6, np.int16)])
    tm = manager(crm, classifier)
    await simulate_call(AudioChunk(mulaw_decode(mulaw_encode(keyed)), 8000), settings,
                        handler=tm, realtime=False)
    spoken = manager(crm, classifier)
    await spoken.start_call(CallInfo("t"))
    by_voice = await spoken.handle_turn(turn(1, "where is my order"))
    assert tm._pending is not None and tm._pending.slot == "order_number"
    assert spoken._pending is not None and by_voice.expect == Expect.DIGITS


@pytest.mark.slow
async def test_a_spoken_card_number_never_reaches_records_or_logs(settings, caplog_loguru):
    caller = synthetic_caller([("My card number is 4111 1111 1111 1234.", 4.0)])
    result = await simulate_call(caller, settings, realtime=False)
    line = result.turns[0].to_json()
    # Masked whatever tiny.en made of the last four digits: no long digit run survives.
    assert "[card ending" in line, line
    assert not re.search(r"\d(?:[ ,.-]?\d){7,}", line.split('"stages"')[0]), line
    assert "4111" not in caplog_loguru.getvalue()
