"""Per-call stream tokens: the webhook issues one, the WebSocket must present it.

A token is ``<payload>.<mac>``: the payload (base64url JSON: the provider's call id, caller,
called number, expiry) signed with HMAC-SHA256 under a key derived from the provider's auth
token. It travels in the stream URL's path, because Twilio's ``<Stream url>`` carries no query
string. Signed rather than kept in a table, so the caller and called numbers come back from a
source we trust (the signed webhook) and any worker with the same settings can check it; each
token is accepted once per process, and only until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass


class TokenError(ValueError):
    """Why a stream token was refused (safe to send back as a close reason)."""


@dataclass(frozen=True)
class StreamGrant:
    call_id: str
    caller_number: str | None
    called_number: str | None
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Issues and checks stream tokens for one provider's calls."""

    def __init__(self, secret: str, ttl_s: float, *, purpose: str = "twilio-stream") -> None:
        self._key = hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()
        self.ttl_s = ttl_s
        self._used: dict[str, float] = {}  # mac -> expiry: each token opens one stream

    def issue(self, call_id: str, caller_number: str | None, called_number: str | None) -> str:
        payload = {"c": call_id, "f": caller_number, "t": called_number,
                   "e": round(time.time() + self.ttl_s, 3)}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def check(self, token: str | None) -> StreamGrant:
        """The grant a token carries; ``TokenError`` when it is missing, forged, expired or
        already used."""
        if not token:
            raise TokenError("missing stream token")
        body, sep, mac = token.partition(".")
        if not sep or not hmac.compare_digest(self._mac(body), mac):
            raise TokenError("invalid stream token")
        try:
            payload = json.loads(_unb64(body))
            grant = StreamGrant(str(payload["c"]), payload.get("f"), payload.get("t"),
                                float(payload["e"]))
        except (ValueError, KeyError, TypeError) as error:
            raise TokenError("invalid stream token") from error
        now = time.time()
        if grant.expires_at < now:
            raise TokenError("expired stream token")
        self._used = {m: e for m, e in self._used.items() if e >= now}
        if mac in self._used:
            raise TokenError("stream token already used")
        self._used[mac] = grant.expires_at
        return grant

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
