"""The request screen and the refusal log, with literal SIP text (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice.transports.sip.messages import InviteInfo
from voice.transports.sip.refusals import RefusalLog
from voice.transports.sip.screen import (
    Request,
    Throttle,
    check_framing,
    check_offer,
    check_require,
    sdp_problem,
)

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
       "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n")


def invite(body: str = "", *, extra: str = "", ctype: str = "application/sdp",
           length: int | None = None, uri: str = "sip:+18005550100@127.0.0.1",
           to_tag: str = "") -> bytes:
    length = len(body.encode()) if length is None else length
    return (f"INVITE {uri} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
            "From: <sip:+15550000001@127.0.0.1>;tag=a\r\n"
            f"To: <sip:+18005550100@127.0.0.1>{to_tag}\r\n"
            "Call-ID: c1@127.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"{extra}Content-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n{body}").encode()


def test_a_good_invite_passes_every_check():
    req = Request.parse(invite(SDP.format(host="127.0.0.1")))
    assert req.method == "INVITE" and not req.in_dialog
    assert check_framing(req) is None and check_require(req) is None
    assert check_offer(req) is None


def test_an_invite_without_sdp_passes_we_offer_in_the_200():
    assert check_offer(Request.parse(invite(""))) is None


def test_an_in_dialog_request_is_recognised_by_its_to_tag():
    assert Request.parse(invite("", to_tag=";tag=xyz")).in_dialog


def test_a_response_is_not_a_request():
    assert Request.parse(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n") is None
    assert Request.parse(b"\x00\x01garbage") is None


@pytest.mark.parametrize("host, problem", [
    ("a" * 300, "connection address too long"),
    ("a" * 250, "connection address is not an IP address"),
    ("example.com", "connection address is not an IP address"),
])
def test_sdp_connection_hosts_pjsip_must_not_see_get_488(host, problem):
    assert sdp_problem(SDP.format(host=host).encode()) == problem
    answer = check_offer(Request.parse(invite(SDP.format(host=host))))
    assert answer.code == 488 and problem in answer.reason


def test_sdp_without_audio_or_with_a_bad_port_gets_488():
    video = SDP.format(host="127.0.0.1").replace("m=audio", "m=video")
    assert sdp_problem(video.encode()) == "no audio stream"
    bad_port = SDP.format(host="127.0.0.1").replace("30000", "99999")
    assert sdp_problem(bad_port.encode()) == "bad media port"


def test_a_body_that_is_not_sdp_gets_415_with_accept():
    answer = check_offer(Request.parse(invite("hello", ctype="text/plain")))
    assert answer.code == 415 and ("Accept", "application/sdp") in answer.headers


def test_content_length_beyond_the_body_is_400_rfc4475_clerr():
    answer = check_framing(Request.parse(invite("v=0\r\n", length=9999)))
    assert answer.code == 400


def test_duplicate_single_headers_are_400_rfc4475_multi01():
    answer = check_framing(Request.parse(invite("", extra="Call-ID: second@127.0.0.1\r\n")))
    assert answer.code == 400 and "Call-Id" in answer.reason


def test_headers_in_the_request_uri_are_400_rfc4475_escruri():
    req = Request.parse(invite("", uri="sip:user@127.0.0.1?Route=%3Csip:example.com%3E"))
    assert check_framing(req).code == 400


def test_unsupported_require_gets_420_naming_the_tags():
    answer = check_require(Request.parse(invite("", extra="Require: timer, foo, Bar\r\n")))
    assert answer.code == 420 and answer.headers == (("Unsupported", "bar, foo"),)
    assert check_require(Request.parse(invite("", extra="Require: timer\r\n"))) is None


def test_invalid_utf8_does_not_break_parsing():
    raw = invite("").replace(b"<sip:+15550000001", b'"\xff\xfe\xfd" <sip:+15550000001')
    req = Request.parse(raw)
    assert req is not None and check_framing(req) is None


def test_a_source_refused_often_is_ignored_for_a_while():
    throttle = Throttle(limit=3, window_s=10, ignore_s=60)
    assert not throttle.refused("192.0.2.1", now=100)
    assert not throttle.refused("192.0.2.1", now=101)
    assert throttle.refused("192.0.2.1", now=102)  # the third within 10 s
    assert throttle.ignored("192.0.2.1", now=150)
    assert not throttle.ignored("192.0.2.1", now=163)
    assert not throttle.ignored("192.0.2.2", now=150)


def test_refusals_spread_out_are_not_an_offence():
    throttle = Throttle(limit=3, window_s=10, ignore_s=60)
    assert not any(throttle.refused("192.0.2.1", now=t) for t in (0, 11, 22, 33, 44))


def test_the_throttle_remembers_a_bounded_number_of_sources():
    throttle = Throttle(limit=2, window_s=10, ignore_s=60, max_sources=100)
    for i in range(1000):
        throttle.refused(f"10.0.{i // 256}.{i % 256}", now=1)
    assert len(throttle._sources) == 100


def _invite(source: str = "192.0.2.9:5060") -> InviteInfo:
    return InviteInfo(sip_call_id="x", caller_number="+1555", caller_name=None,
                      called_number="+1800", source=source)


def test_a_flood_of_refusals_is_one_record_per_source_code_and_window():
    log = RefusalLog(window_s=60)
    written = log.refused(_invite(), 503, "busy", now=1000)
    assert len(written) == 1 and written[0].end_reason == "refused-503"
    for i in range(3999):
        assert log.refused(_invite(), 503, "busy", now=1000 + i * 0.01) == []
    other = log.refused(_invite("192.0.2.10:5060"), 403, "Forbidden", now=1050)
    assert [r.source for r in other] == ["192.0.2.10:5060"]
    final = log.refused(_invite(), 503, "busy", now=1061)  # the first window has closed
    counts = sorted(r.context["count"] for r in final)
    assert counts == [1, 4000]
    assert [r.context["count"] for r in log.flush()] == []  # nothing more to write


def test_rtcp_and_family_mismatches_pjsip_asserts_on_get_488():
    """Found by the hostile corpus: an a=rtcp host of 300 characters, and c=IN IP4 ::1, each
    aborted the worker in PJSIP's address code."""
    rtcp = SDP.format(host="127.0.0.1") + f"a=rtcp:30001 IN IP4 {'a' * 300}\r\n"
    assert sdp_problem(rtcp.encode()) == "connection address too long"
    assert sdp_problem(SDP.format(host="::1").encode()) == \
        "connection address does not match its family"
    ip6 = SDP.format(host="::1").replace("IN IP4", "IN IP6")
    assert sdp_problem(ip6.encode()) is None


def test_a_request_line_in_mixed_case_is_still_screened():
    """The fuzzer's bypass: 'sIP/2.0' made the screen pass the INVITE, and its 255-character
    c= host aborted PJSIP."""
    raw = invite(SDP.format(host="a" * 255)).replace(b" SIP/2.0\r\n", b" sIP/2.0\r\n", 1)
    req = Request.parse(raw)
    assert req is not None and check_offer(req).code == 488


def test_request_lines_the_screen_cannot_read_are_not_passed_on():
    """RFC 4475 lwsstart: extra spaces in the request line. PJSIP takes it; the guard answers
    400 for anything Request.parse refuses."""
    assert Request.parse(invite("").replace(b"INVITE sip:", b"INVITE  sip:", 1)) is None
    assert Request.parse(b" INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\n") is None


def test_sdp_lines_end_at_crlf_as_pjsip_reads_them():
    hidden = SDP.format(host="127.0.0.1").replace("s=-", "s=-\u2028c=IN IP4 example.com")
    assert sdp_problem(hidden.encode()) is None  # PJSIP sees one s= line, so do we


# -- the screen never raises, whatever the bytes (it runs on PJSIP's receive path) -------------

SDP_LINES = st.sampled_from(["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0",
                             "c=IN IP4 127.0.0.1", "c=IN IP6 ::1", "m=audio 4000 RTP/AVP 0",
                             "a=rtcp:4001 IN IP4 127.0.0.1", "a=rtpmap:0 PCMU/8000"])
MUTATED = st.one_of(SDP_LINES, st.text(max_size=300),
                    SDP_LINES.map(lambda line: line[:2] + "x" * 300),
                    SDP_LINES.map(lambda line: line.replace(" ", "  ")))


@settings(max_examples=300, deadline=None)
@given(st.lists(MUTATED, max_size=12), st.sampled_from(["\r\n", "\n", "\u2028", ""]))
def test_sdp_pre_checks_never_raise(lines, sep):
    body = sep.join(lines).encode("utf-8", "surrogatepass")
    result = sdp_problem(body)
    assert result is None or isinstance(result, str)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_request_parsing_and_checks_never_raise_on_any_bytes(raw):
    for data in (raw, invite(SDP.format(host="127.0.0.1")) + raw, raw + invite("")):
        req = Request.parse(data)
        if req is not None:
            for check in (check_framing, check_require, check_offer):
                answer = check(req)
                assert answer is None or 100 <= answer.code < 700
