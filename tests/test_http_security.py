"""The HTTP app's secure defaults, in process: caller data needs a token, unknown Host values
are refused, no OpenAPI description unless enabled, /healthz public and 503 while draining, and
stored data never turns into a 500."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest
from fastapi.testclient import TestClient

from handoff.api import BearerAuth, handoff_router
from handoff.store import HandoffStore
from voice.app.callstore import CallRecord, CallStore
from voice.app.http import create_app
from voice.app.metrics import IvrMetrics
from voice.app.server import default_allowed_hosts, generated_api_token
from voice.app.settings import IvrSettings

TOKEN = "a-long-random-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def parts(tmp_path):
    store = CallStore(f"sqlite:///{tmp_path}/ivr.sqlite", tmp_path / "spool")
    store.save_call(CallRecord(id="a", started_at=1000.0, caller_number="+15550000001"))
    handoffs = HandoffStore(f"sqlite:///{tmp_path}/handoffs.sqlite", tmp_path / "hspool")
    state = {"status": "ok"}
    return store, handoffs, state, tmp_path


def client(parts, **kwargs) -> TestClient:
    store, handoffs, state, _ = parts
    auth = BearerAuth({TOKEN: "ops", "agent-token": "Dana"})
    app = create_app(store, IvrMetrics(), lambda: dict(state),
                     [handoff_router(handoffs, tokens=auth)], auth=auth, **kwargs)
    return TestClient(app, base_url="http://127.0.0.1:8080")


def test_caller_data_needs_a_token(parts):
    http = client(parts)
    for path in ("/api/calls", "/api/handoffs", "/api/handoffs/x"):
        refused = http.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == "Bearer"
        assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    [call] = http.get("/api/calls", headers=AUTH).json()
    assert call["caller_number"] == "+15550000001"
    # An agent's desktop token is their session for the handoff and call APIs as well.
    assert http.get("/api/handoffs", headers={"Authorization": "Bearer agent-token"}
                    ).json() == []
    assert http.get("/healthz").status_code == 200  # public
    assert http.get("/metrics").status_code == 200


def test_an_api_without_tokens_cannot_be_built():
    with pytest.raises(ValueError):
        BearerAuth([])
    with pytest.raises(ValueError):
        BearerAuth({"": "nobody"})


def test_only_allowed_host_values_are_answered(parts):
    http = client(parts)  # default: loopback names only
    assert http.get("/healthz", headers={"Host": "attacker.example"}).status_code == 400
    assert http.get("/api/calls", headers={**AUTH, "Host": "rebind.attacker.example:8080"}
                    ).status_code == 400
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080"):
        assert http.get("/healthz", headers={"Host": host}).status_code == 200, host
    named = client(parts, allowed_hosts=["ivr.example.net", "*.pbx.example", "::1"])
    assert named.get("/healthz", headers={"Host": "ivr.example.net"}).status_code == 200
    assert named.get("/healthz", headers={"Host": "a.pbx.example"}).status_code == 200
    assert named.get("/healthz", headers={"Host": "[::1]"}).status_code == 200
    assert named.get("/healthz", headers={"Host": "localhost"}).status_code == 400


def test_default_allowed_hosts_follow_the_configured_addresses():
    settings = IvrSettings.load(None, server__http_host="10.1.2.3",
                                sip__public_address="ivr.example.net")
    hosts = default_allowed_hosts(settings)
    assert {"localhost", "127.0.0.1", "::1", "10.1.2.3", "ivr.example.net"} <= set(hosts)
    assert "0.0.0.0" not in default_allowed_hosts(IvrSettings.load(
        None, server__http_host="0.0.0.0"))


def test_openapi_is_off_unless_enabled(parts):
    http = client(parts)
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert http.get(path).status_code == 404, path
    assert client(parts, openapi=True).get("/openapi.json").status_code == 200


def test_healthz_says_draining_with_503_during_shutdown(parts):
    _, _, state, _ = parts
    http = client(parts)
    state["status"] = "draining"
    answer = http.get("/healthz")
    assert answer.status_code == 503 and answer.json()["status"] == "draining"


def test_rows_that_are_not_utf8_never_make_a_500(parts):
    store, handoffs, _, tmp_path = parts
    store.save_call(CallRecord(id="b", started_at=2000.0, sip_call_id="x\udcff@h",
                               context={"caller_name": "\udcff\udcfe\udcfd"}))
    with sqlite3.connect(tmp_path / "ivr.sqlite") as db:  # a row the old code left behind
        db.execute("INSERT INTO calls (id, transport, started_at, context) VALUES "
                   "('c', 'sip', 3000.0, ?)", (json.dumps({"caller_name": "\udcff"}),))
    answer = client(parts).get("/api/calls?limit=100", headers=AUTH)
    assert answer.status_code == 200
    calls = {c["call_id"]: c for c in answer.json()}
    assert calls["b"]["context"]["caller_name"] == "\\xff\\xfe\\xfd"
    assert calls["b"]["sip_call_id"] == "x\\xff@h"
    assert calls["c"]["context"]["caller_name"] == "\\xff"


def test_the_generated_token_file_is_private_and_kept(tmp_path):
    path = tmp_path / "var" / "api-token"
    token, created = generated_api_token(path)
    assert created and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert generated_api_token(path) == (token, False)
    os.chmod(path, 0o644)  # someone widened it: narrowed again, same token
    assert generated_api_token(path) == (token, False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
