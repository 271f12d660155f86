"""Context push to a real HTTP receiver on loopback that checks the signature."""

from __future__ import annotations

import json
import time

import pytest
from fastapi import FastAPI, Request, Response

from handoff.crm import CrmStore, seed
from handoff.package import build_package
from handoff.store import HandoffStore
from handoff.webhooks import (SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookPusher, sign,
                              verify_signature)

from loopback import free_port, serve
from test_handoff_package import TRANSCRIPT, order_call

SECRET = "s3cret-shared-with-the-crm"


def receiver() -> FastAPI:
    """A CRM's webhook endpoint: refuses a bad signature; /flaky fails twice first."""
    app = FastAPI()
    app.state.received, app.state.calls = [], {"flaky": 0}

    async def checked(request: Request) -> bytes | None:
        body = await request.body()
        if not verify_signature(SECRET, request.headers.get(TIMESTAMP_HEADER), body,
                                request.headers.get(SIGNATURE_HEADER), tolerance_s=60):
            return None
        return body

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        body = await checked(request)
        if body is None:
            return Response(status_code=401)
        app.state.received.append(json.loads(body))
        return Response(status_code=204)

    @app.post("/flaky")
    async def flaky(request: Request) -> Response:
        app.state.calls["flaky"] += 1
        if app.state.calls["flaky"] <= 2:
            return Response("upstream down", status_code=500)
        return await hook(request)

    return app


@pytest.fixture
def setup(tmp_path):
    crm = CrmStore(f"sqlite:///{tmp_path}/crm.sqlite")
    seed(crm, customers=20)
    store = HandoffStore(f"sqlite:///{tmp_path}/handoffs.sqlite", spool_dir=tmp_path / "spool")
    package = build_package(order_call(crm), crm, TRANSCRIPT)
    store.save(package)
    yield store, package
    store.close()


async def test_a_signed_push_is_verified_retried_and_recorded(setup):
    store, package = setup
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connection refused
    app = receiver()
    with serve(app) as url:
        pusher = WebhookPusher([f"{url}/hook", f"{url}/flaky", dead], SECRET, store,
                               attempts=3, base_delay_s=0.05)
        started = time.monotonic()
        results = await pusher.push(package)
        await pusher.aclose()
    hook, flaky, refused = results  # in the order of the URLs
    assert hook.delivered and hook.attempts == 1
    assert flaky.delivered and flaky.attempts == 3
    assert not refused.delivered and refused.attempts == 3
    assert "ConnectError" in refused.error
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff 0.05 s, then 0.1 s
    assert [p["handoff_id"] for p in app.state.received] == [package.handoff_id] * 2
    assert app.state.received[0]["summary"] == package.summary
    deliveries = store.get(package.handoff_id)["deliveries"]
    flaky = [(d["attempt"], d["status_code"], d["delivered"]) for d in deliveries
             if d["url"].endswith("/flaky")]
    assert flaky == [(1, 500, False), (2, 500, False), (3, 204, True)]
    refused = [d for d in deliveries if d["url"] == dead]
    assert [d["attempt"] for d in refused] == [1, 2, 3]
    assert not any(d["delivered"] for d in refused) and refused[-1]["status_code"] is None


async def test_a_wrong_secret_is_refused_and_not_retried(setup):
    store, package = setup
    app = receiver()
    with serve(app) as url:
        pusher = WebhookPusher([f"{url}/hook"], "not-the-secret", store, attempts=3,
                               base_delay_s=0.01)
        [result] = await pusher.push(package)
        await pusher.aclose()
    assert not result.delivered and result.attempts == 1 and result.status_code == 401
    assert app.state.received == []


def test_verify_signature_checks_body_secret_and_age():
    body = b'{"handoff_id":"x"}'
    now = 1_800_000_000
    header = sign(SECRET, str(now), body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, str(now), body, header, now=now + 10)
    assert not verify_signature(SECRET, str(now), body + b" ", header, now=now)
    assert not verify_signature("other", str(now), body, header, now=now)
    assert not verify_signature(SECRET, str(now), body, header, tolerance_s=300, now=now + 301)
    assert not verify_signature(SECRET, None, body, header)
    assert not verify_signature(SECRET, "yesterday", body, header)


def test_urls_without_a_secret_fail_early():
    with pytest.raises(ValueError, match="need a secret"):
        WebhookPusher(["http://127.0.0.1:9/hook"], "")
