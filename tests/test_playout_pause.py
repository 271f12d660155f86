"""A reply paused between its sentences (the next one still being synthesized) is still under
way: a caller who talks then is talking over it, and the cut reply is reported as such."""

from __future__ import annotations

from voice.pipeline.playout import Interrupted, PlayoutBuffer

FRAME = 8000 * 20 // 1000 * 2  # bytes of a 20 ms frame at 8 kHz


def drain(buffer: PlayoutBuffer, frames: int) -> None:
    for _ in range(frames):
        buffer.pull()


def test_a_reply_between_two_sentences_is_under_way_and_is_cut_in_its_pause():
    buffer = PlayoutBuffer(8000, 20)
    assert not buffer.reply_under_way
    buffer.add(1, 3, "You said:", b"\1\0" * (FRAME // 2) * 2, last=False)
    drain(buffer, 3)
    assert not buffer.playing and buffer.reply_under_way  # nothing queued, the reply goes on
    assert buffer.clear() == (Interrupted(1, 3, "You said:"), set())
    assert not buffer.reply_under_way


def test_a_reply_ends_with_its_last_piece_and_a_newer_one_replaces_an_unfinished_one():
    buffer = PlayoutBuffer(8000, 20)
    buffer.add(1, 3, "You said:", b"\1\0" * (FRAME // 2), last=False)
    buffer.add(1, 3, "Hello.", b"\1\0" * (FRAME // 2), last=True)
    drain(buffer, 3)
    assert not buffer.reply_under_way
    # A reply left unfinished (its answer cancelled without a cut) does not stay under way
    # once a newer reply is heard: a cut then is the newer one's; and that one ends as usual.
    buffer.add(2, 4, "One.", b"\1\0" * (FRAME // 2), last=False)
    drain(buffer, 2)
    buffer.add(3, 5, "Two.", b"\1\0" * FRAME, last=True)
    drain(buffer, 1)
    assert buffer.clear() == (Interrupted(3, 5, "Two."), set())
    buffer.add(4, 6, "Three.", b"\1\0" * FRAME, last=True)
    drain(buffer, 2)
    assert not buffer.reply_under_way
