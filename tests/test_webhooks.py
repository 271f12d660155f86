"""Context push to a real HTTP receiver on loopback that checks the signature."""

from __future__ import annotations

import json
import time

import pytest
from fastapi import FastAPI, Request, Response
from loopback import free_port, serve
from standardwebhooks import Webhook, WebhookVerificationError
from test_handoff_package import TRANSCRIPT, order_call

from handoff.build import build_package
from handoff.crm import CrmStore, seed
from handoff.store import HandoffStore
from handoff.webhooks import WebhookPusher, signer, webhook_signing_secret

SECRET = "s3cret-shared-with-the-crm"


def receiver() -> FastAPI:
    """A CRM's webhook endpoint: refuses a bad signature; /flaky fails twice first."""
    app = FastAPI()
    app.state.received, app.state.calls = [], {"flaky": 0}

    # What a receiver does with the off-the-shelf library and the secret in whsec_ form.
    verifier = Webhook(webhook_signing_secret(SECRET))

    async def checked(request: Request) -> bytes | None:
        body = await request.body()
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
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


def test_signatures_follow_standard_webhooks():
    """Our signer and the standardwebhooks library agree; body, secret and id are all bound."""
    from datetime import UTC, datetime

    body = '{"handoff_id":"x"}'
    now = datetime.now(UTC)
    signature = signer(SECRET).sign("x.1", now, body)
    assert signature.startswith("v1,")
    headers = {"webhook-id": "x.1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature}
    receiver = Webhook(webhook_signing_secret(SECRET))
    assert receiver.verify(body, headers) == {"handoff_id": "x"}
    for changed in ({"webhook-id": "x.2"}, {"webhook-timestamp": str(int(now.timestamp()) - 400)}):
        with pytest.raises(WebhookVerificationError):
            receiver.verify(body, {**headers, **changed})
    with pytest.raises(WebhookVerificationError):
        receiver.verify(body + " ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_signing_secret("other")).verify(body, headers)
    assert webhook_signing_secret("whsec_abc") == "whsec_abc"


def test_urls_without_a_secret_fail_early():
    with pytest.raises(ValueError, match="need a secret"):
        WebhookPusher(["http://127.0.0.1:9/hook"], "")
