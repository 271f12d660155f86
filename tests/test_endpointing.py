"""End-of-turn policy on literal timelines: (seconds, is-speech) per 20 ms frame."""

from __future__ import annotations

from voice.app.settings import TurnSettings
from voice.endpointing import TurnEventKind as K
from voice.endpointing import TurnSegmenter, required_silence_ms

FRAME = 0.02


def run(segmenter: TurnSegmenter, pattern: list[tuple[bool, float]], start: float = 0.0):
    """Feed runs of (is_speech, seconds); return (event kind, decision time) pairs."""
    t, events = start, []
    for speech, seconds in pattern:
        for _ in range(round(seconds / FRAME)):
            t = round(t + FRAME, 6)
            events += [(e.kind, round(e.at_s, 2), e) for e in segmenter.push(t, speech)]
    return events, t


def test_one_sentence_then_silence_ends_once_the_transcript_sets_the_wait():
    settings = TurnSettings()
    seg = TurnSegmenter(settings, FRAME)
    events, t = run(seg, [(False, 0.5), (True, 1.0), (False, 0.12)])
    assert [(k, at) for k, at, _ in events] == [(K.SPEECH_STARTED, 0.6), (K.EARLY_PAUSE, 1.62)]
    assert events[1][2].speech_end_s == 1.5
    # The transcript arrives 100 ms later: a complete sentence waits confirm_silence_ms in all.
    wait = required_silence_ms("Where is my order?", settings)
    assert wait == settings.confirm_silence_ms
    assert seg.set_required_silence(wait, t + 0.1) == []
    events, _ = run(seg, [(False, 0.3)], start=t)
    assert [(k, at) for k, at, _ in events] == [(K.TURN_ENDED, 1.86)]


def test_speech_after_the_early_pause_resumes_the_same_turn():
    seg = TurnSegmenter(TurnSettings(), FRAME)
    events, _ = run(seg, [(True, 0.5), (False, 0.2), (True, 0.5), (False, 0.2)])
    kinds = [k for k, _, _ in events]
    assert kinds == [K.SPEECH_STARTED, K.EARLY_PAUSE, K.SPEECH_RESUMED, K.EARLY_PAUSE]
    assert events[-1][2].speech_start_s == 0.0 and events[-1][2].speech_end_s == 1.2


def test_a_click_is_not_a_turn_and_does_not_resume_one():
    seg = TurnSegmenter(TurnSettings(min_speech_ms=100), FRAME)
    events, _ = run(seg, [(True, 0.06), (False, 0.5)])
    assert events == []
    events, t = run(seg, [(True, 0.4), (False, 0.2), (True, 0.02), (False, 0.1)])
    assert [k for k, _, _ in events] == [K.SPEECH_STARTED, K.EARLY_PAUSE]


def test_a_pending_transcript_holds_the_turn_at_most_the_longest_wait():
    settings = TurnSettings()
    seg = TurnSegmenter(settings, FRAME)
    events, _ = run(seg, [(True, 0.5), (False, 2.0)])
    ended = [e for k, _, e in events if k == K.TURN_ENDED]
    assert len(ended) == 1
    longest = max(settings.digits_silence_ms, settings.incomplete_silence_ms) / 1000
    assert abs(ended[0].at_s - (0.5 + longest)) < FRAME + 1e-9


def test_a_monologue_is_cut_at_max_turn_length():
    seg = TurnSegmenter(TurnSettings(max_turn_s=5.0), FRAME)
    events, _ = run(seg, [(True, 12.0)])
    forced = [e for k, _, e in events if k == K.TURN_ENDED]
    assert len(forced) == 2 and all(e.forced for e in forced)


def test_the_wait_depends_on_what_was_said():
    s = TurnSettings()
    assert required_silence_ms("I'd like to check my balance.", s) == s.confirm_silence_ms
    assert required_silence_ms("I'd like to check my balance and", s) == s.incomplete_silence_ms
    assert required_silence_ms("so, um", s) == s.incomplete_silence_ms
    assert required_silence_ms("I'd like to check my balance, and...", s) == s.incomplete_silence_ms
    # A sentence Whisper closed is complete, whatever its last word.
    assert required_silence_ms("More respectable than he was.", s) == s.confirm_silence_ms
    # A number being read out in groups: wait for the rest.
    assert required_silence_ms("My account number is 4 5 6", s) == s.digits_silence_ms
    assert required_silence_ms("four five", s, expect_digits=True) == s.digits_silence_ms
    assert required_silence_ms("I have 2", s) == s.confirm_silence_ms


def test_a_hang_up_mid_sentence_still_closes_the_turn():
    seg = TurnSegmenter(TurnSettings(), FRAME)
    run(seg, [(True, 0.8)])
    event = seg.end_now(0.8)
    assert event is not None and event.kind == K.TURN_ENDED and event.forced
    assert seg.end_now(0.9) is None  # nothing left open
