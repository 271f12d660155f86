"""`ivr serve` answering real SIP peers: sipp (Debian's sip-tester) and a pjsua2 caller.

One IVR process serves the module (echo handler, so what the IVR heard is what it says back);
each test places calls the way a trunk would and reads the outcome from the IVR's own call API.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.harness import SIPP, IvrProcess, run_peer, run_sipp
from tests.sip import scenarios as sc
from tests.sip.rtp_pcap import write_rtp_pcap

CALLS = Path(__file__).parent / "fixtures" / "calls"
DTMF_1 = "/usr/share/sip-tester/dtmf_2833_1.pcap"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp missing: `make test` installs "
                                 "sip-tester")]


@pytest.fixture(scope="module")
def ivr(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ivr")
    server = IvrProcess(workdir, {
        "call": {"handler": "echo", "greeting": "Hello."},
        "sip": {"max_calls": 2, "answer_delay_ms": 600, "allow_from": ["127.0.0.1/32"],
                "x_headers": ["X-Customer-Id"], "max_silence_s": 30},
    }).start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path


def _by_caller_call_id(call_id_part: str):
    return lambda call: call_id_part in (call.get("sip_call_id") or "")


def test_a_sipp_caller_speaks_and_keys_a_digit_and_is_answered(ivr, workdir):
    """INVITE (PCMU + telephone-event) -> 200 -> ACK; the caller says one sentence as PCMU RTP,
    keys '1' as an RFC 4733 event, then hangs up with BYE."""
    seconds = write_rtp_pcap(CALLS / "two_turns_8k.wav", workdir / "caller.pcap")
    steps = (sc.play("caller.pcap") + sc.pause(int(seconds * 1000) + 2500) + sc.play(DTMF_1)
             + sc.pause(2500) + sc.BYE)
    body = sc.answered_call(steps).replace(
        "Max-Forwards: 70\n      Content-Type",
        "Max-Forwards: 70\n      X-Customer-Id: C-1001\n      Content-Type", 1)
    done = run_sipp(sc.scenario("speak-and-key", body), ivr.address, workdir, name="speak")
    assert done.returncode == 0, done.stdout + done.stderr

    call = ivr.wait_call(lambda c: c["end_reason"] == "caller-hangup"
                         and c["context"].get("x_headers", {}).get("X-Customer-Id") == "C-1001")
    assert call["caller_number"] == "+15550000001"
    assert call["called_number"] == "+18005550100"
    assert call["codec"].startswith("PCMU")
    assert call["answered_at"] and call["sip_call_id"]
    assert call["context"]["dtmf_events"] >= 1
    said = " ".join(t["caller_text"] for t in call["turns"]).lower()
    assert "ill-disposed" in said or "young man" in said, call["turns"]
    first = call["turns"][0]
    assert first["reply_text"].startswith("You said")
    assert set(first["stages"]) >= {"end_of_turn", "asr", "tts_first_audio", "transport"}
    assert call["context"]["frames"]["frames_in"] > 0


def test_cancel_before_answer_starts_no_pipeline(ivr, workdir):
    """INVITE -> 180 -> CANCEL: 200 for the CANCEL, 487 for the INVITE; recorded as cancelled."""
    done = run_sipp(sc.scenario("cancel", sc.cancelled(after_ms=200)), ivr.address, workdir,
                    name="cancel")
    assert done.returncode == 0, done.stdout + done.stderr
    call = ivr.wait_call(lambda c: c["end_reason"] == "cancelled")
    assert call["answered_at"] is None and call["turns"] == []


def test_bye_from_the_caller_in_the_middle_of_a_reply(ivr, workdir):
    """The caller hangs up while the IVR is still saying its (long) echo reply."""
    seconds = write_rtp_pcap(CALLS / "barge_in_8k.wav", workdir / "long.pcap")
    # The first sentence ends at 7.2 s; the echo of it takes several seconds to say.
    steps = sc.play("long.pcap") + sc.pause(8600) + sc.BYE
    done = run_sipp(sc.scenario("bye-mid-reply", sc.answered_call(steps)), ivr.address,
                    workdir, name="bye")
    assert done.returncode == 0, done.stdout + done.stderr
    assert seconds > 8.6
    call = ivr.wait_call(lambda c: c["end_reason"] == "caller-hangup" and c["turns"]
                         and "dashwood" in c["turns"][0]["caller_text"].lower())
    assert call["ended_at"]


def test_an_invite_from_an_address_not_allowed_is_refused_with_403(ivr, workdir):
    done = run_sipp(sc.scenario("not-allowed", sc.refused(403)), ivr.address, workdir,
                    name="forbidden", local_ip="127.0.0.2")
    assert done.returncode == 0, done.stdout + done.stderr
    call = ivr.wait_call(lambda c: c["end_reason"] == "refused-403")
    assert call["source"].startswith("127.0.0.2") and call["turns"] == []
    assert ivr.get("/healthz")["calls_active"] == 0


def test_calls_beyond_the_limit_get_503_with_retry_after(ivr, workdir):
    """Two calls hold the IVR (max_calls 2); a third INVITE gets 503 and Retry-After."""
    holders = [run_sipp(sc.scenario("hold", sc.answered_call(sc.pause(7000) + sc.BYE)),
                        ivr.address, workdir, name=f"holder{i}", background=True)
               for i in range(2)]
    deadline = time.time() + 15
    while ivr.get("/healthz")["calls_active"] < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert ivr.get("/healthz")["calls_active"] == 2
    check = ('<action><ereg regexp="[0-9]+" search_in="hdr" header="Retry-After:" '
             'check_it="true" assign_to="retry"/><log message="Retry-After [$retry]"/></action>')
    done = run_sipp(sc.scenario("over-limit", sc.refused(503, check)), ivr.address, workdir,
                    name="over")
    assert done.returncode == 0, done.stdout + done.stderr
    for holder in holders:
        out, _ = holder.communicate(timeout=60)
        assert holder.returncode == 0, out
    assert ivr.wait_call(lambda c: c["end_reason"] == "refused-503")


def test_options_keepalive_is_answered(ivr, workdir):
    done = run_sipp(sc.scenario("options", sc.OPTIONS), ivr.address, workdir, name="options")
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_offer_with_no_supported_codec_gets_488(ivr, workdir):
    body = sc.invite(sdp=sc.SDP_G729_ONLY) + '  <recv response="100" optional="true"/>\n' \
        '  <recv response="180" optional="true"/>\n  <recv response="488"/>\n' + sc.ack_failure(4)
    done = run_sipp(sc.scenario("g729", body), ivr.address, workdir, name="g729")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_pjsua2_caller_measures_voice_to_voice_latency_at_its_side(ivr, workdir):
    """The caller plays a two-sentence recording over RTP and records what comes back; each
    sentence is answered, and the wait is measured from the end of its speech to the first
    audible sample received."""
    result = run_peer([ivr.uri, "--play", str(CALLS / "two_turns_8k.wav"), "--wait", "1.5",
                       "--tail", "5", "--record", str(workdir / "call.wav")])
    assert result["connected"] and result["codec"].startswith("PCMU")
    waits = [t["voice_to_voice_ms"] for t in result["turns"]]
    assert len(waits) == 2 and all(w is not None for w in waits), result
    call = ivr.wait_call(lambda c: c["caller_number"] == "+15550000001"
                         and len(c["turns"]) == 2 and c["end_reason"] == "caller-hangup")
    for turn in call["turns"]:
        assert turn["reply_text"].startswith("You said") and turn["total_ms"]
    assert (workdir / "call.wav").stat().st_size > 0


def test_sip_info_dtmf_reaches_the_pipeline(ivr, workdir):
    result = run_peer([ivr.uri, "--wait", "1.0", "--dtmf", "7@0.5", "--dtmf-method", "info",
                       "--play", str(CALLS / "digits_8k.wav"), "--tail", "3",
                       "--caller-id", "+15550000777"])
    assert result["connected"]
    call = ivr.wait_call(lambda c: c["caller_number"] == "+15550000777")
    assert call["context"]["dtmf_events"] == 1
    assert call["context"]["dtmf_methods"] == ["sip-info"]


def test_a_reinvite_puts_the_ivr_on_hold_and_back(ivr, workdir):
    """re-INVITE with a=sendonly (the caller's PBX holds us), then a=sendrecv, then BYE."""
    steps = (sc.pause(1500) + sc.reinvite("sendonly", 2) + sc.pause(1500)
             + sc.reinvite("sendrecv", 3) + sc.pause(1000) + sc.bye(4))
    body = sc.answered_call(steps).replace("sip:+15550000001@[local_ip]", "sip:+15550000444@[local_ip]")
    done = run_sipp(sc.scenario("hold", body), ivr.address, workdir, name="hold")
    assert done.returncode == 0, done.stdout + done.stderr
    call = ivr.wait_call(lambda c: c["caller_number"] == "+15550000444")
    assert call["context"]["hold_events"] >= 1 and call["end_reason"] == "caller-hangup"


def test_malformed_sip_gets_an_error_or_is_dropped_and_the_ivr_keeps_serving(ivr, workdir):
    """Garbage datagrams, a request with no Call-ID, and an INVITE with an SDP body that is not
    SDP: none starts a call or stops the listener; a well-formed OPTIONS is still answered."""
    import socket

    def exchange(data: bytes, wait_s: float = 2.0) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(wait_s)
            sock.sendto(data, ("127.0.0.1", ivr.sip_port))
            try:
                return sock.recv(4096).decode(errors="replace")
            except TimeoutError:
                return ""

    assert exchange(bytes(range(256)) * 4, wait_s=0.5) == ""  # not SIP: silently dropped
    no_call_id = ("INVITE sip:+18005550100@127.0.0.1 SIP/2.0\r\n"
                  "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad1\r\n"
                  "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:+18005550100@127.0.0.1>\r\n"
                  "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    exchange(no_call_id.encode(), wait_s=0.5)  # PJSIP cannot even answer this: dropped
    bad_sdp_body = "this is not SDP\r\n"
    bad_sdp = ("INVITE sip:+18005550100@127.0.0.1 SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad2;rport\r\n"
               "From: <sip:+15550000555@127.0.0.1>;tag=2\r\nTo: <sip:+18005550100@127.0.0.1>\r\n"
               "Call-ID: malformed-sdp-1\r\nCSeq: 1 INVITE\r\n"
               "Contact: <sip:+15550000555@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\n"
               "Content-Type: application/sdp\r\n"
               f"Content-Length: {len(bad_sdp_body)}\r\n\r\n{bad_sdp_body}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        port = sock.getsockname()[1]
        sock.sendto(bad_sdp.format(port=port).encode(), ("127.0.0.1", ivr.sip_port))
        answers = []
        try:
            while True:
                answers.append(sock.recv(4096).decode(errors="replace").split("\r\n")[0])
        except TimeoutError:
            pass
    final = [a for a in answers if a.startswith("SIP/2.0 ") and not a.startswith("SIP/2.0 1")]
    assert final and final[0].split()[1] in ("400", "488"), answers
    assert ivr.get("/healthz")["calls_active"] == 0
    done = run_sipp(sc.scenario("options-after-garbage", sc.OPTIONS), ivr.address, workdir,
                    name="options2")
    assert done.returncode == 0, done.stdout + done.stderr
