"""What the IVR reads from an INVITE, from literal SIP text (no network)."""

from voice.transports.sip.messages import (
    address_allowed,
    display_name,
    header,
    parse_invite,
    source_host,
    uri_user,
)

INVITE = (
    "INVITE sip:+18005550100@ivr.example.net SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK776asdhds\r\n"
    "f: \"Alex Morgan\" <sip:+15550000001@trunk.example.net>;tag=1928301774\r\n"
    "To: <sip:+18005550100@ivr.example.net>\r\n"
    "i: a84b4c76e66710@trunk.example.net\r\n"
    "P-Asserted-Identity: \"Alex M\" <sip:+15550000009@trunk.example.net>\r\n"
    "X-Customer-Id: C-1001\r\n"
    "X-Route: billing,\r\n"
    " priority\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\nX-Customer-Id: not-a-header\r\n")


def test_headers_are_read_case_insensitively_with_compact_forms_and_folding():
    assert header(INVITE, "call-id") == "a84b4c76e66710@trunk.example.net"
    assert header(INVITE, "FROM").startswith('"Alex Morgan"')
    assert header(INVITE, "x-route") == "billing, priority"
    assert header(INVITE, "X-Missing") is None


def test_the_asserted_identity_wins_over_from_and_the_body_is_not_headers():
    info = parse_invite(INVITE, "203.0.113.7:5060", ["X-Customer-Id", "X-Other"])
    assert info.caller_number == "+15550000009"  # the network vouches for P-Asserted-Identity
    assert info.caller_name == "Alex M"
    assert info.called_number == "+18005550100"
    assert info.sip_call_id == "a84b4c76e66710@trunk.example.net"
    assert info.x_headers == {"X-Customer-Id": "C-1001"}


def test_numbers_and_names_from_name_addr_and_tel_uris():
    assert uri_user("<sip:+15550000001@host;user=phone>") == "+15550000001"
    assert uri_user("tel:+15550000001") == "+15550000001"
    assert uri_user("Anonymous <sip:anonymous@anonymous.invalid>") == "anonymous"
    assert uri_user("garbage") is None
    assert display_name('"Alex Morgan" <sip:1@h>') == "Alex Morgan"
    assert display_name("Alex <sip:1@h>") == "Alex"
    assert display_name("<sip:1@h>") is None


def test_source_addresses_and_the_allow_list():
    assert source_host("203.0.113.7:5060") == "203.0.113.7"
    assert source_host("[2001:db8::1]:5060") == "2001:db8::1"
    assert address_allowed("203.0.113.7", ["203.0.113.0/24"])
    assert not address_allowed("198.51.100.1", ["203.0.113.0/24", "127.0.0.1/32"])
    assert address_allowed("2001:db8::1", ["2001:db8::/32"])
    assert not address_allowed("not-an-ip", ["0.0.0.0/0"])
