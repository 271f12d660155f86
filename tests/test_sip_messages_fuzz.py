"""Properties of the SIP text readers (voice/transports/sip/messages.py) over arbitrary input
(hypothesis).

They run on ``SipRxData.wholeMsg`` of whatever PJSIP accepted, which for a hostile peer can hold
any byte: the process decodes it with ``surrogateescape``. Whatever comes in, they return and
never raise; and on messages built from random but well-formed headers they read back what was
put in (compact forms, case, folding, LF-only line ends included).
"""

from __future__ import annotations

import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from voice.transports.sip.messages import (
    InviteInfo,
    address_allowed,
    display_name,
    header,
    header_values,
    parse_invite,
    source_host,
    uri_user,
)

FAST = settings(max_examples=300, deadline=None)
WIRE = st.binary(max_size=2000).map(lambda b: b.decode("utf-8", "surrogateescape"))
ANY_TEXT = st.one_of(st.text(max_size=500), WIRE)
SIPISH = st.lists(st.sampled_from(
    ["INVITE sip:+1@h SIP/2.0", "From:", "f:", "To:", "t:", "Call-ID:", "i:", "<sip:", "<tel:",
     "sips:", ">", "\"", "\\", "@", ";tag=", ":", " ", "\t", "\r\n", "\n", "\r", "\r\n\r\n",
     "P-Asserted-Identity:", "X-Customer-Id:", "\udcff\udcfe\udcfd", "\x00", "é", "+1555",
     "Alex", "<", "\"\"", "\r\n ", "\n\t"]), max_size=60).map("".join)
MESSAGES = st.one_of(ANY_TEXT, SIPISH)
NAMES = st.one_of(st.sampled_from(["From", "f", "To", "t", "Call-ID", "i", "Contact", "m",
                                   "P-Asserted-Identity", "X-Customer-Id", ""]),
                  st.text(max_size=20))


@FAST
@given(MESSAGES, NAMES)
def test_header_values_never_raise(message, name):
    values = header_values(message, name)
    assert isinstance(values, list) and all(isinstance(v, str) for v in values)
    assert header(message, name) == (values[0] if values else None)


@FAST
@given(st.one_of(st.none(), MESSAGES))
def test_uri_user_and_display_name_never_raise(value):
    user, name = uri_user(value), display_name(value)
    assert user is None or (isinstance(user, str) and user)
    assert name is None or (isinstance(name, str) and name)


@FAST
@given(MESSAGES, ANY_TEXT, st.lists(NAMES, max_size=4))
def test_parse_invite_never_raises(message, source, x_headers):
    info = parse_invite(message, source, x_headers)
    assert isinstance(info, InviteInfo) and isinstance(info.sip_call_id, str)
    assert all(len(v) <= 256 for v in info.x_headers.values())


TOKEN = st.text(string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1, max_size=12)
VALUE = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40).map(
    str.strip)


@FAST
@given(st.lists(st.tuples(TOKEN, VALUE), min_size=1, max_size=8, unique_by=lambda h: h[0].lower()),
       st.data())
def test_each_header_put_in_is_read_back(headers, data):
    """Random well-formed headers, some folded, with CRLF or bare LF, are read back exactly."""
    assume(not any(name.lower() in ("f", "t", "i", "m", "from", "to", "call-id", "contact")
                   for name, _ in headers))
    newline = data.draw(st.sampled_from(["\r\n", "\n"]))
    lines = ["OPTIONS sip:ivr@127.0.0.1 SIP/2.0"]
    for name, value in headers:
        words = value.split(" ")
        if len(words) > 1 and data.draw(st.booleans()):  # fold between two words
            cut = data.draw(st.integers(1, len(words) - 1))
            lines += [f"{name.swapcase()} : " + " ".join(words[:cut]),
                      " " + " ".join(words[cut:])]
        else:
            lines.append(f"{name}: {value}")
    message = newline.join(lines) + newline + newline + "v=0" + newline
    for name, value in headers:
        assert header_values(message, name.upper()) == [" ".join(value.split(" "))]


@FAST
@given(st.text("0123456789+*#", min_size=1, max_size=20), st.text(
    string.ascii_letters + " .,'-", max_size=30).map(str.strip),
    st.sampled_from(["f", "From", "FROM", "from"]))
def test_the_caller_read_from_any_spelling_of_from(number, name, key):
    assume("\"" not in name)
    message = (f"INVITE sip:+18005550100@127.0.0.1 SIP/2.0\r\n{key}: \"{name}\" "
               f"<sip:{number}@127.0.0.1>;tag=1\r\nt: <sip:+18005550100@127.0.0.1>\r\n"
               f"i: abc\r\n\r\n")
    info = parse_invite(message, "127.0.0.1:5060", [])
    assert info.caller_number == number and info.called_number == "+18005550100"
    assert info.caller_name == (name or None) and info.sip_call_id == "abc"


@FAST
@given(st.ip_addresses(), st.integers(1, 65535))
def test_source_host_reads_what_pjsip_writes(ip, port):
    written = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    assert source_host(written) == str(ip)


@FAST
@given(ANY_TEXT)
def test_address_allowed_never_raises(host):
    assert address_allowed(host, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]) in (True, False)


SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


@given(st.sampled_from(SEPARATORS), st.sampled_from(["From", "f", "To", "Subject", "X-Any"]))
def test_a_line_separator_inside_a_header_value_starts_no_header(separator, carrier):
    """SIP lines end at CRLF only. PJSIP takes U+2028 (bytes E2 80 A8), NEL and the other
    characters str.splitlines() breaks at as part of a value; read as line ends they let a
    display name inject a P-Asserted-Identity, and the IVR would look the caller up in the CRM
    by a number of the attacker's choosing."""
    injected = f"{separator}P-Asserted-Identity: <sip:+19999999999@127.0.0.1>"
    value = (f'"Alex{injected}" <sip:+15550001111@127.0.0.1>;tag=1' if carrier in ("From", "f")
             else f"hello{injected}")
    message = (f"INVITE sip:+18005550100@127.0.0.1 SIP/2.0\r\n{carrier}: {value}\r\n"
               + ("" if carrier in ("From", "f")
                  else 'From: "Alex" <sip:+15550001111@127.0.0.1>;tag=1\r\n')
               + "To: <sip:+18005550100@127.0.0.1>\r\nCall-ID: sep-1\r\n\r\n")
    assert header_values(message, "P-Asserted-Identity") == []
    assert parse_invite(message, "127.0.0.1:5060", []).caller_number == "+15550001111"
