"""The inference tier's messages, parsed apart from any socket: what round-trips and what a
damaged message is told."""

from __future__ import annotations

import json
import struct

import pytest

from voice.inference.wire import Message, WireError, field_of, parse


def test_a_message_round_trips_with_its_payload():
    pcm = bytes(range(256)) * 4
    message = Message({"model": "tiny.en", "rate": 16000}, pcm)
    back = parse(bytes(message))
    assert back.header == {"model": "tiny.en", "rate": 16000}
    assert back.payload == pcm


def test_a_message_cut_anywhere_is_reported_truncated():
    data = bytes(Message({"text": "Your order has shipped."}, b"\x01\x02" * 50))
    for cut in (0, 3, 10, len(data) - 1):
        with pytest.raises(WireError, match="truncated"):
            parse(data[:cut])


def test_a_payload_longer_than_declared_is_refused():
    data = bytes(Message({"rate": 16000}, b"\x00\x00")) + b"\x00"
    with pytest.raises(WireError, match="header says 2 payload bytes, 3 present"):
        parse(data)


def raw(header: object) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head


@pytest.mark.parametrize(("header", "error"), [
    ([1, 2], "JSON object"),
    ({"payload": 0}, "version None"),
    ({"v": 2, "payload": 0}, "version 2"),
    ({"v": 1}, "'payload' must be a byte count"),
    ({"v": 1, "payload": -1}, "'payload' must be a byte count"),
])
def test_a_malformed_header_is_named(header, error):
    with pytest.raises(WireError, match=error):
        parse(raw(header))


def test_a_header_that_is_not_json_is_named():
    with pytest.raises(WireError, match="not JSON"):
        parse(struct.pack(">I", 3) + b"{x}")


def test_an_absurd_header_length_is_refused_before_reading():
    with pytest.raises(WireError, match="exceeds"):
        parse(struct.pack(">I", 2**31) + b"{}")


def test_header_fields_are_checked_by_name_and_type():
    header = {"rate": 16000, "text": "hello", "flag": True}
    assert field_of(header, "rate", int) == 16000
    assert field_of(header, "model", (str, type(None)), None) is None
    with pytest.raises(WireError, match="'texts' is missing"):
        field_of(header, "texts", list)
    with pytest.raises(WireError, match="'text' has the wrong type"):
        field_of(header, "text", int)
    with pytest.raises(WireError, match="'flag' has the wrong type"):
        field_of(header, "flag", int)  # a JSON true is not the number 1
