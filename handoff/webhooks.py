"""Context push: POST the handoff package to configured URLs, signed, retried, recorded.

Requests are signed the Standard Webhooks way (https://www.standardwebhooks.com): headers
``webhook-id`` (the handoff id and attempt), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``. A receiver verifies with
the off-the-shelf ``standardwebhooks`` library (Python, JavaScript, Go, Java, ...):
``Webhook(secret).verify(body, headers)``, which also refuses a request older than five minutes.
The secret is ``handoff.webhook_secret``: a ``whsec_<base64>`` secret is used as Standard Webhooks
defines it; any other string is used as its UTF-8 bytes (give receivers
``webhook_signing_secret(secret)``, the same key in ``whsec_`` form).

Connection errors, timeouts and 5xx answers are retried with stamina's exponential backoff and
jitter; a 4xx is final (the receiver refused this body; sending it again will not help). Every
attempt is recorded in the store.

Migration from the first release's ``X-IVR-Timestamp``/``X-IVR-Signature: sha256=<hex>``
headers: those are no longer sent. Receivers switch to ``standardwebhooks`` verification with the
same secret (see ``webhook_signing_secret``).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import stamina
from loguru import logger
from standardwebhooks import Webhook

from handoff.package import HandoffPackage
from handoff.store import HandoffStore

ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", \
    "webhook-signature"


def signer(secret: str) -> Webhook:
    """The Standard Webhooks signer/verifier for ``secret`` (``whsec_...`` or a plain string)."""
    if secret.startswith("whsec_"):
        return Webhook(secret)
    return Webhook(secret.encode())


def webhook_signing_secret(secret: str) -> str:
    """``secret`` in the ``whsec_<base64>`` form receivers' libraries take."""
    if secret.startswith("whsec_"):
        return secret
    return "whsec_" + base64.b64encode(secret.encode()).decode()


class _Retry(Exception):
    """An attempt worth repeating (no answer, or a 5xx)."""


@dataclass(frozen=True)
class DeliveryResult:
    """How the push to one URL ended."""

    url: str
    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None


class WebhookPusher:
    """Pushes packages to ``urls``; one per process, closed with ``aclose``."""

    def __init__(self, urls: list[str], secret: str, store: HandoffStore | None = None, *,
                 attempts: int = 4, base_delay_s: float = 0.5, max_delay_s: float = 30.0,
                 timeout_s: float = 5.0) -> None:
        if urls and not secret:
            raise ValueError("webhook urls need a secret to sign with (handoff.webhook_secret)")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if base_delay_s < 0 or max_delay_s < base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        self.urls = list(urls)
        self.signer = signer(secret) if secret else None
        self.store = store
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def push(self, package: HandoffPackage | dict[str, Any]) -> list[DeliveryResult]:
        """POST the package to every URL at once; returns when each has delivered or given up."""
        data = package.to_dict() if isinstance(package, HandoffPackage) else package
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return list(await asyncio.gather(
            *(self._deliver(data["handoff_id"], url, body) for url in self.urls)))

    def push_in_background(self, package: HandoffPackage | dict[str, Any]) -> asyncio.Task:
        """``push`` as a named task, for callers that must not wait (the transfer goes on)."""
        data = package.to_dict() if isinstance(package, HandoffPackage) else package
        return asyncio.create_task(self.push(data), name=f"webhooks-{data['handoff_id']}")

    async def _deliver(self, handoff_id: str, url: str, body: bytes) -> DeliveryResult:
        status: int | None = None
        error: str | None = None
        attempt = 0
        delivered = False
        try:
            async for trying in stamina.retry_context(
                    on=_Retry, attempts=self.attempts, timeout=None,
                    wait_initial=self.base_delay_s, wait_max=self.max_delay_s,
                    wait_jitter=self.base_delay_s / 2):
                with trying:
                    attempt += 1
                    status, error = await self._attempt(handoff_id, url, body, attempt)
                    delivered = error is None
                    # SQLite waits on the disk: off the event loop, which carries calls' audio.
                    await asyncio.to_thread(self._record, handoff_id, url, attempt, status,
                                            error, delivered)
                    if not delivered and (status is None or status >= 500):
                        raise _Retry(error)
        except _Retry:
            pass  # attempts used up
        if delivered:
            return DeliveryResult(url, True, attempt, status, None)
        logger.error(f"handoff {handoff_id}: webhook {url} failed after {attempt} attempts: "
                     f"{error}")
        return DeliveryResult(url, False, attempt, status, error)

    async def _attempt(self, handoff_id: str, url: str, body: bytes,
                       attempt: int) -> tuple[int | None, str | None]:
        """One signed POST: ``(status, error)``; ``error`` is None when delivered."""
        message_id = f"{handoff_id}.{attempt}"
        now = datetime.now(UTC)
        headers = {"Content-Type": "application/json", ID_HEADER: message_id,
                   TIMESTAMP_HEADER: str(int(now.timestamp())),
                   SIGNATURE_HEADER: self.signer.sign(message_id, now, body.decode())}
        try:
            answer = await self.client.post(url, content=body, headers=headers)
        except httpx.TransportError as failure:  # refused, reset, timed out
            return None, f"{type(failure).__name__}: {failure}"
        if answer.status_code >= 300:
            return answer.status_code, f"HTTP {answer.status_code}: {answer.text[:200]}"
        return answer.status_code, None

    def _record(self, handoff_id: str, url: str, attempt: int, status: int | None,
                error: str | None, delivered: bool) -> None:
        if self.store is not None:
            self.store.record_delivery(handoff_id, url, attempt, status_code=status,
                                       error=error, delivered=delivered)

    async def aclose(self) -> None:
        await self.client.aclose()
