"""A real `ivr serve` with no token configured: caller data needs the token it generated (kept
in a 0600 file the log points to, never in the log), unknown Host values and the OpenAPI
description are refused, an INVITE whose From name and Call-ID are not UTF-8 is stored escaped
and listed without a 500, and through a SIGTERM drain /healthz keeps answering 503 `draining`.

The tests share one server, in order: the last one stops it."""

from __future__ import annotations

import json
import signal
import stat
import threading
import time
import urllib.error
import urllib.request

import pytest

from bench.harness import IvrProcess
from tests.sip.raw_uac import RawUac

pytestmark = pytest.mark.slow


def http(ivr: IvrProcess, path: str, token: str | None = None,
         host: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if host:
        headers["Host"] = host
    request = urllib.request.Request(f"http://127.0.0.1:{ivr.http_port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def ivr(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serve")
    server = IvrProcess(workdir, {
        "call": {"handler": "echo"},
        # No token anywhere: not the harness's, no desktop tokens.
        "server": {"api_tokens": [], "api_token_file": str(workdir / "data" / "api-token")},
        "sip": {"shutdown_grace_s": 8.0, "max_silence_s": 60}}).start()
    yield server
    server.stop()


def test_caller_data_needs_the_generated_token(ivr):
    path = ivr.workdir / "data" / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    log = ivr.log()
    assert str(path) in log and token not in log
    for route in ("/api/calls", "/api/handoffs"):
        assert http(ivr, route)[0] == 401, route
        assert http(ivr, route, "not-the-token")[0] == 401, route
        assert http(ivr, route, token)[0] == 200, route
    assert http(ivr, "/healthz")[0] == 200
    assert http(ivr, "/healthz", host="rebind.attacker.example")[0] == 400
    assert http(ivr, "/api/calls", token, host=f"attacker.example:{ivr.http_port}")[0] == 400
    assert http(ivr, "/openapi.json")[0] == 404 and http(ivr, "/docs")[0] == 404


def test_an_invite_that_is_not_utf8_is_stored_escaped_and_listed(ivr):
    token = (ivr.workdir / "data" / "api-token").read_text().strip()
    uac = RawUac(ivr.sip_port, call_id=b"bad-\xff\xfe-call@127.0.0.1",
                 from_name=b"Alex \xff\xfe\xfd")
    try:
        assert uac.invite() == 200
        time.sleep(1.0)
        assert uac.bye() == 200
    finally:
        uac.close()
    deadline = time.time() + 20
    call = None
    while time.time() < deadline and call is None:
        status, body = http(ivr, "/api/calls?limit=100", token)
        assert status == 200, body[:500]
        call = next((c for c in json.loads(body) if c["ended_at"]
                     and (c["sip_call_id"] or "").startswith("bad-")), None)
        time.sleep(0.3)
    assert call is not None, ivr.log()[-3000:]
    assert call["sip_call_id"] == "bad-\\xff\\xfe-call@127.0.0.1"
    assert call["context"]["caller_name"] == "Alex \\xff\\xfe\\xfd"
    assert call["end_reason"] == "caller-hangup"
    assert not list((ivr.workdir / "spool").glob("*.json"))  # in the database, not the spool


def test_http_serves_draining_through_the_whole_sigterm_drain(ivr):
    """A call is up when SIGTERM arrives, and shutdown_grace_s is 8 s: for those seconds
    /healthz must answer 503 `draining` (and the API keep answering), not vanish."""
    token = (ivr.workdir / "data" / "api-token").read_text().strip()
    uac = RawUac(ivr.sip_port, caller=b"+15550000321")
    assert uac.invite() == 200
    hung_up = threading.Thread(target=uac.wait_bye, args=(40,), daemon=True)
    hung_up.start()
    try:
        status, body = http(ivr, "/healthz")
        assert status == 200 and json.loads(body)["calls_active"] == 1
        signalled = time.time()
        ivr.proc.send_signal(signal.SIGTERM)
        seen: list[tuple[float, int, str]] = []
        api_during_drain = None
        while ivr.proc.poll() is None and time.time() - signalled < 40:
            try:
                status, body = http(ivr, "/healthz")
                seen.append((time.time() - signalled, status, json.loads(body)["status"]))
                if api_during_drain is None and seen[-1][0] > 2:
                    api_during_drain = http(ivr, "/api/calls", token)[0]
            except (urllib.error.URLError, ConnectionError, OSError):
                seen.append((time.time() - signalled, 0, "unreachable"))
            time.sleep(0.2)
        assert ivr.proc.wait(30) == 0, ivr.log()[-3000:]
    finally:
        hung_up.join(5)
        uac.close()
    draining = [at for at, status, state in seen if status == 503 and state == "draining"]
    assert draining, seen
    # Served through the drain, not only at its start: the call held it open for ~8 s.
    assert max(draining) > 6.0, seen
    assert not [s for s in seen if s[0] < max(draining) and s[2] == "unreachable"], seen
    assert api_during_drain == 200
    assert uac.ended_by_server  # the call still up at the end of the grace got its BYE
