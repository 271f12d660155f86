"""Short-lived, single-use call tokens for WebRTC signalling.

``/api/webrtc/token`` (behind the API's tokens or ``webrtc.secret``) issues one; the offer
presents it. A token is ``<expiry ms>.<nonce>.<HMAC-SHA256>`` under a key made at start-up, so it
is checked without storage; the nonces used are remembered until they expire, so one token
places one call. Tokens die with the process (a restart needs a new one, which the page asks for
on every call anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time


class TokenError(Exception):
    """Why a token was refused: ``missing``, ``malformed``, ``bad-signature``, ``expired``,
    ``used``."""


class CallTokens:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._key = secrets.token_bytes(32)
        self._used: dict[str, float] = {}  # nonce -> expiry

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> tuple[str, float]:
        """A new token and its expiry (epoch seconds)."""
        expires = (now or time.time()) + self.ttl_s
        body = f"{int(expires * 1000)}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body)}", expires

    def redeem(self, token: str | None, now: float | None = None) -> None:
        """Accept ``token`` once, or raise ``TokenError``."""
        now = now or time.time()
        if not token:
            raise TokenError("missing")
        expiry, _, rest = token.partition(".")
        nonce, _, signature = rest.partition(".")
        if not (expiry and nonce and signature) or len(token) > 200:
            raise TokenError("malformed")
        if not hmac.compare_digest(self._sign(f"{expiry}.{nonce}"), signature):
            raise TokenError("bad-signature")
        try:
            expires = int(expiry) / 1000
        except ValueError as error:
            raise TokenError("malformed") from error
        if expires < now:
            raise TokenError("expired")
        self._used = {n: t for n, t in self._used.items() if t >= now}
        if nonce in self._used:
            raise TokenError("used")
        self._used[nonce] = expires
