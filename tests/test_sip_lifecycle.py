"""Call limits and process lifecycle of `ivr serve` with real peers: silence, SIGTERM during a
call, and registration with digest authentication to a registrar (sipp as the registrar)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from bench.harness import SIPP, IvrProcess, free_port, peer_result, run_peer

CALLS = Path(__file__).parent / "fixtures" / "calls"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp missing: `make test` installs "
                                 "sip-tester")]


def test_silence_and_duration_limits_end_calls_with_a_goodbye(tmp_path):
    ivr = IvrProcess(tmp_path, {"call": {"handler": "echo"},
                                "sip": {"max_silence_s": 3.0, "max_call_s": 8.0}}).start()
    try:
        talker = run_peer([ivr.uri, "--wait", "0.2", "--stay", "--timeout", "40",
                           "--play", str(CALLS / "barge_in_8k.wav"),
                           "--caller-id", "+15550000998"], timeout_s=60)
        assert talker["connected"] and talker["ended_by"] == "ivr"
        call = ivr.wait_call(lambda c: c["caller_number"] == "+15550000998")
        assert call["end_reason"] == "max-duration"
        result = run_peer([ivr.uri, "--wait", "0.2", "--stay", "--timeout", "40",
                           "--caller-id", "+15550000999"], timeout_s=60)
        assert result["connected"]
        assert result["ended_by"] == "ivr"
        assert result["reply_onsets_s"], "the goodbye was not heard"
        call = ivr.wait_call(lambda c: c["caller_number"] == "+15550000999")
        assert call["end_reason"] == "silence-timeout"
    finally:
        assert ivr.stop() == 0


def test_sigterm_ends_calls_in_progress_with_bye_and_writes_their_records(tmp_path):
    ivr = IvrProcess(tmp_path, {"call": {"handler": "echo"},
                                "sip": {"shutdown_grace_s": 1.0, "max_silence_s": 60}}).start()
    caller = run_peer([ivr.uri, "--wait", "0.2", "--stay", "--timeout", "60",
                       "--play", str(CALLS / "two_turns_8k.wav"),
                       "--caller-id", "+15550000888"], background=True)
    deadline = time.time() + 20
    while time.time() < deadline and ivr.get("/healthz")["calls_active"] == 0:
        time.sleep(0.2)
    time.sleep(4.5)  # mid-call: the first sentence has been answered
    assert ivr.stop() == 0, ivr.log()[-2000:]
    result = peer_result(caller)
    assert result["connected"] and result["ended_by"] == "ivr"
    log = ivr.log()
    assert "stopping" in log and "ended (shutdown)" in log, log[-2000:]
    # The process is gone; its store holds the finished record.
    from voice.app.callstore import CallStore

    store = CallStore(f"sqlite:///{tmp_path / 'ivr.sqlite'}", tmp_path / "spool")
    call = next(c for c in store.latest() if c["caller_number"] == "+15550000888")
    assert call["end_reason"] == "shutdown" and call["ended_at"]
    assert call["turns"], "the answered first sentence was not recorded"


REGISTRAR = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="registrar with digest authentication">
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="trunk.example", nonce="47ebe028cda119c35d4877b383027d28da013815", algorithm=MD5
      Content-Length: 0

    ]]>
  </send>
  <recv request="REGISTER" check_it="true">
    <action>
      <verifyauth assign_to="authvalid" username="ivr-trunk" password="s3cret"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
  <send next="end">
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="good"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=300
      Expires: 300
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""


def test_registration_with_digest_authentication_to_a_registrar(tmp_path):
    port = free_port()
    (tmp_path / "registrar.xml").write_text(REGISTRAR)
    registrar = subprocess.Popen(
        [SIPP, "-sf", str(tmp_path / "registrar.xml"), "-m", "1", "-i", "127.0.0.1",
         "-p", str(port), "-nostdin", "-timeout", "60s", "-timeout_error", "-trace_err",
         "-error_file", str(tmp_path / "registrar.errors")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ivr = IvrProcess(tmp_path, {"call": {"handler": "echo"},
                                "sip": {"registrar": f"sip:127.0.0.1:{port}",
                                        "username": "ivr-trunk", "password": "s3cret",
                                        "realm": "trunk.example", "allow_from": []}})
    try:
        ivr.start()
        deadline = time.time() + 20
        state = {}
        while time.time() < deadline:
            state = ivr.get("/healthz")["sip"]["registration"]
            if state.get("state") == "registered":
                break
            time.sleep(0.3)
        assert state.get("state") == "registered", (state, ivr.log()[-2000:])
        out, _ = registrar.communicate(timeout=30)
        assert registrar.returncode == 0, out  # the registrar verified the digest
    finally:
        registrar.kill()
        assert ivr.stop() == 0


def test_tls_listener_when_a_certificate_is_configured(tmp_path):
    """With a certificate, `ivr serve` listens for SIP over TLS too; a TLS client completes the
    handshake and an OPTIONS over it is answered."""
    import socket
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls_port = free_port()
    ivr = IvrProcess(tmp_path, {"call": {"handler": "echo"},
                                "sip": {"transports": ["udp", "tls"], "tls_port": tls_port,
                                        "tls_cert_file": str(cert),
                                        "tls_key_file": str(key)}}).start()
    try:
        assert "tls" in ivr.get("/healthz")["sip"]["bound"]
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw, \
                context.wrap_socket(raw) as tls:
            local = tls.getsockname()
            tls.sendall((
                f"OPTIONS sip:ivr@127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch=z9hG4bKtls1;rport\r\n"
                "From: <sip:monitor@127.0.0.1>;tag=t1\r\nTo: <sip:ivr@127.0.0.1>\r\n"
                "Call-ID: tls-options-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n").encode())
            answer = tls.recv(4096).decode(errors="replace")
        assert answer.startswith("SIP/2.0 200"), answer
    finally:
        assert ivr.stop() == 0
