"""Carriers' webhook signatures, checked as each publishes them.

Twilio (``X-Twilio-Signature``): base64(HMAC-SHA1(auth token, URL + every POST parameter's
name and value, sorted by name, then value)). The URL is the one Twilio requested, query
string included. Twilio signs with or without the port depending on how the webhook was
configured, so both forms are accepted, as Twilio's own helper libraries do.

Written here rather than taken from the ``twilio`` package: that package pulls in a REST client
and aiohttp for twelve lines of HMAC, and nothing else of it is used.

Telnyx (``telnyx-signature-ed25519``, ``telnyx-timestamp``): base64(Ed25519 signature of
``f"{timestamp}|{raw body}"``) under the account's key pair; we hold its public key. A timestamp
outside the tolerance is refused, so a captured request cannot be replayed later. Checked with
``cryptography`` rather than Telnyx's SDK (a REST client, for one verify call).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """The signature Twilio sends for a POST of ``params`` to ``url``."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _port_variants(url: str) -> list[str]:
    """``url`` without any port, and with its port (the scheme's default when none is given):
    the two forms Twilio's helper libraries accept."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80, "wss": 443, "ws": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    variants = [urlunsplit(parts._replace(netloc=f"{prefix}{host}"))]
    port = parts.port or default
    if port is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{port}")))
    return variants


def valid_twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]],
                           signature: str | None) -> bool:
    """Whether ``signature`` is Twilio's for this request (compared in constant time)."""
    if not signature or not auth_token:
        return False
    return any(hmac.compare_digest(twilio_signature(auth_token, variant, params), signature)
               for variant in _port_variants(url))


def telnyx_public_key(base64_key: str) -> Ed25519PublicKey:
    """The account's public key as Telnyx's portal shows it (base64 of the 32 raw bytes);
    ``ValueError`` naming the fix when it is not one."""
    try:
        raw = base64.b64decode(base64_key, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("carrier.telnyx_public_key is not a base64 Ed25519 public key (32 "
                         "bytes): copy it from the Telnyx portal (Keys & Credentials)") from None


def telnyx_signature_problem(key: Ed25519PublicKey, body: bytes, signature: str | None,
                             timestamp: str | None, tolerance_s: float,
                             now: float | None = None) -> str | None:
    """Why a Telnyx webhook is refused (None: it is Telnyx's, and recent)."""
    if not signature or not timestamp:
        return "no signature"
    try:
        sent_at = int(timestamp)
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return "malformed signature"
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        return "stale timestamp"
    try:
        key.verify(raw, timestamp.encode() + b"|" + body)
    except InvalidSignature:
        return "invalid signature"
    return None
