"""A Telnyx stand-in for tests and benchmarks: it does what Telnyx does for one TeXML call.

It POSTs the TeXML voice webhook (form fields as Telnyx sends them) signed as Telnyx signs
webhooks (Ed25519 over ``"{timestamp}|{body}"`` with a test key pair), reads the
``<Connect><Stream>`` answer, opens the stream URL and speaks Telnyx's media streaming protocol
as its AsyncAPI documents it: ``connected``, ``start`` (``stream_id``, ``call_control_id``,
``media_format`` PCMU 8000 mono), ``media`` every 20 ms with ``sequence_number``/``chunk``/
``timestamp``/``track``, ``dtmf``, ``mark`` echoes and ``stop``. The playback buffer, the
timeline and what was heard are ``TwilioStream``'s: only the messages' spelling differs.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.twilio_client import TwilioStream


def new_key_pair() -> tuple[Ed25519PrivateKey, str]:
    """A test account's key pair: the private key signs, the base64 public key is the
    ``carrier.telnyx_public_key`` setting."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key, base64.b64encode(public).decode()


def texml_params(call_sid: str, caller: str = "+15551230002",
                 called: str = "+18005550100") -> dict[str, str]:
    """The form fields of Telnyx's TeXML request for an incoming call."""
    return {"AccountSid": str(uuid.uuid4()), "CallSid": call_sid, "CallSidLegacy": call_sid,
            "CallStatus": "ringing", "ConnectionId": "1234567890", "Direction": "inbound",
            "From": caller, "To": called}


def signed_webhook(base_url: str, key: Ed25519PrivateKey, params: dict[str, str], *,
                   timestamp: int | None = None, tamper: dict[str, str] | None = None,
                   signature: str | None = None) -> tuple[int, str]:
    """POST the TeXML webhook as Telnyx does; (status, body). ``tamper`` changes fields after
    signing; ``timestamp`` signs as if sent then."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    body = urllib.parse.urlencode(params).encode()
    if signature is None:
        signature = base64.b64encode(key.sign(ts.encode() + b"|" + body)).decode()
    if tamper:
        body = urllib.parse.urlencode({**params, **tamper}).encode()
    request = urllib.request.Request(base_url.rstrip("/") + "/telnyx/voice", data=body,
                                     method="POST", headers={
                                         "Content-Type": "application/x-www-form-urlencoded",
                                         "telnyx-signature-ed25519": signature,
                                         "telnyx-timestamp": ts})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def stream_url_of(texml: str) -> str:
    match = re.search(r'<Stream url="([^"]+)" bidirectionalMode="rtp"', texml)
    if match is None:
        raise AssertionError(f"no bidirectional <Stream url> in {texml!r}")
    return match.group(1).replace("&amp;", "&")


def new_call_sid() -> str:
    return "v3:" + uuid.uuid4().hex


class TelnyxStream(TwilioStream):
    """One media stream, from Telnyx's side."""

    def __init__(self, url: str, call_sid: str) -> None:
        super().__init__(url, call_sid)
        self.stream_sid = str(uuid.uuid4())  # Telnyx's stream_id

    async def start(self, call_sid: str | None = None) -> None:
        await self.send({
            "event": "start", "sequence_number": self._next(), "stream_id": self.stream_sid,
            "start": {"user_id": str(uuid.uuid4()), "call_control_id": call_sid or self.call_sid,
                      "client_state": "", "media_format": {"encoding": "PCMU",
                                                           "sample_rate": 8000, "channels": 1}}})

    def connected_message(self) -> dict:
        return {"event": "connected", "version": "1.0.0"}

    def media(self, ulaw: bytes, sequence: int | None = None) -> dict:
        self.chunk += 1
        return {"event": "media", "sequence_number": str(sequence) if sequence else self._next(),
                "stream_id": self.stream_sid,
                "media": {"track": "inbound", "chunk": str(self.chunk),
                          "timestamp": str((self.chunk - 1) * 20),
                          "payload": base64.b64encode(ulaw).decode()}}

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "stream_id": self.stream_sid,
                         "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "sequence_number": self._next(), "dtmf": {"digit": digit}})

    async def stop(self) -> None:
        await self.send({"event": "stop", "sequence_number": self._next(),
                         "stream_id": self.stream_sid,
                         "stop": {"user_id": "", "call_control_id": self.call_sid}})

    def mark_echo(self, name: str) -> dict:
        return {"event": "mark", "sequence_number": self._next(), "stream_id": self.stream_sid,
                "mark": {"name": name}}


async def place_call(base_url: str, key: Ed25519PrivateKey, *,
                     caller: str = "+15551230002") -> TelnyxStream:
    """Webhook, then the stream opened and started: a connected call."""
    call_sid = new_call_sid()
    status, texml = await asyncio.to_thread(signed_webhook, base_url, key,
                                            texml_params(call_sid, caller))
    if status != 200:
        raise AssertionError(f"webhook answered {status}: {texml}")
    return await TelnyxStream(stream_url_of(texml), call_sid).open()
