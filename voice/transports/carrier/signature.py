"""Twilio's webhook signature (``X-Twilio-Signature``), checked as Twilio publishes it.

The signature is base64(HMAC-SHA1(auth token, URL + every POST parameter's name and value,
sorted by name, then value)). The URL is the one Twilio requested, query string included. Twilio
signs with or without the port depending on how the webhook was configured, so both forms are
accepted, as Twilio's own helper libraries do.

Written here rather than taken from the ``twilio`` package: that package pulls in a REST client
and aiohttp for twelve lines of HMAC, and nothing else of it is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit


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
