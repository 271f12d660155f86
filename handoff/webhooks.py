"""Context push: POST the handoff package to configured URLs, signed, retried, recorded.

Each request carries ``X-IVR-Timestamp`` (Unix seconds) and ``X-IVR-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``f"{timestamp}.{body}"`` under a shared secret, so that a
receiver can check both who sent it and that it is fresh (``verify_signature``). Connection
errors, timeouts and 5xx answers are retried with exponential backoff; a 4xx is final (the
receiver refused this body; sending it again will not help). Every attempt is recorded in the
store.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from loguru import logger

from handoff.package import HandoffPackage
from handoff.store import HandoffStore

TIMESTAMP_HEADER = "X-IVR-Timestamp"
SIGNATURE_HEADER = "X-IVR-Signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: str | None, body: bytes, header: str | None,
                     tolerance_s: float = 300.0, *, now: float | None = None) -> bool:
    """For receivers: True if ``header`` signs ``body`` at ``timestamp`` and the timestamp is
    within ``tolerance_s`` of now (a replayed old request fails)."""
    if not timestamp or not header:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


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
        self.secret = secret
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
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                       SIGNATURE_HEADER: sign(self.secret, timestamp, body)}
            retry = False
            try:
                answer = await self.client.post(url, content=body, headers=headers)
                status, error = answer.status_code, None
                if answer.status_code >= 300:
                    error = f"HTTP {answer.status_code}: {answer.text[:200]}"
                retry = answer.status_code >= 500
            except httpx.TransportError as failure:  # refused, reset, timed out
                status, error, retry = None, f"{type(failure).__name__}: {failure}", True
            delivered = error is None
            # SQLite waits on the disk: off the event loop, which carries the calls' audio.
            await asyncio.to_thread(self._record, handoff_id, url, attempt, status, error,
                                    delivered)
            if delivered:
                return DeliveryResult(url, True, attempt, status, None)
            if not retry or attempt == self.attempts:
                break
            await asyncio.sleep(min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))
        logger.error(f"handoff {handoff_id}: webhook {url} failed after {attempt} attempts: "
                     f"{error}")
        return DeliveryResult(url, False, attempt, status, error)

    def _record(self, handoff_id: str, url: str, attempt: int, status: int | None,
                error: str | None, delivered: bool) -> None:
        if self.store is not None:
            self.store.record_delivery(handoff_id, url, attempt, status_code=status,
                                       error=error, delivered=delivered)

    async def aclose(self) -> None:
        await self.client.aclose()
