"""WebRTC signalling without a browser: call tokens, and every way an offer is refused.

The real router on a real FastAPI app (through httpx's ASGI transport); offers are made by a real
aiortc peer, so what is refused or accepted is real SDP. The browser end to end is in
tests/test_webrtc_browser.py.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiortc import RTCPeerConnection
from fastapi import FastAPI

from handoff.api import BearerAuth
from voice.app.settings import WebRtcSettings
from voice.transports.webrtc.line import WebRtcCallLine
from voice.transports.webrtc.signalling import WebRtcGateway, audio_problem, webrtc_router
from voice.transports.webrtc.tokens import CallTokens, TokenError

API_TOKEN = "api-token-for-tests"
SECRET = "site-secret-for-tests"


async def make_offer(*, audio: bool = True) -> str:
    pc = RTCPeerConnection()
    if audio:
        pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("ivr")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


class Server:
    """The router, with the seams ``IvrServer`` gives it: a start_call that keeps the line and
    a switch for ``can_accept``."""

    def __init__(self, **settings) -> None:
        self.settings = WebRtcSettings(secret=SECRET, **settings)
        self.accepting = True
        self.lines: list[WebRtcCallLine] = []
        self.gateway = WebRtcGateway(self.settings, self.lines.append, lambda: self.accepting)
        app = FastAPI()
        app.include_router(webrtc_router(self.gateway, BearerAuth({API_TOKEN: "tests"})))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                        base_url="http://127.0.0.1")

    async def token(self, key: str = API_TOKEN) -> str:
        response = await self.client.post("/api/webrtc/token",
                                          headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        return response.json()["token"]

    async def offer(self, sdp: str | None, token: str | None,
                    body: dict | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = body or {"type": "offer", "sdp": sdp}
        return await self.client.post("/api/webrtc/offer", json=payload, headers=headers)

    async def close(self) -> None:
        for line in self.lines:
            await line.hangup()
        await self.client.aclose()


@pytest.fixture
async def server():
    s = Server()
    yield s
    await s.close()


# -- call tokens -----------------------------------------------------------------------------------

def test_a_call_token_places_one_call_before_it_expires():
    tokens = CallTokens(ttl_s=30)
    token, expires = tokens.issue(now=1000.0)
    assert expires == 1030.0
    tokens.redeem(token, now=1010.0)
    with pytest.raises(TokenError, match="used"):
        tokens.redeem(token, now=1011.0)
    late, _ = tokens.issue(now=1000.0)
    with pytest.raises(TokenError, match="expired"):
        tokens.redeem(late, now=1031.0)


def test_a_forged_or_mangled_token_is_refused():
    tokens = CallTokens(ttl_s=30)
    token, _ = tokens.issue()
    expiry, nonce, signature = token.split(".")
    forged = f"{int(expiry) + 3_600_000}.{nonce}.{signature}"  # a longer life, same signature
    for bad, why in [(forged, "bad-signature"), ("", "missing"), (None, "missing"),
                     ("abc", "malformed"), (CallTokens(30).issue()[0], "bad-signature")]:
        with pytest.raises(TokenError, match=why):
            tokens.redeem(bad)


# -- the token endpoint ----------------------------------------------------------------------------

async def test_the_token_endpoint_needs_an_api_token_or_the_configured_secret(server):
    post = server.client.post
    assert (await post("/api/webrtc/token")).status_code == 401
    wrong = await post("/api/webrtc/token", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    for key in (API_TOKEN, SECRET):
        response = await post("/api/webrtc/token", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        assert response.json()["token"] and response.json()["ice_servers"] == []
        assert response.json()["echo_cancellation"] is True  # the page's default: loudspeakers


def test_stun_and_turn_servers_reach_the_page_as_configured():
    from voice.transports.webrtc.signalling import ice_servers

    settings = WebRtcSettings(stun_urls=["stun:stun.example.org:3478"],
                              turn_urls=["turn:turn.example.org:3478?transport=udp"],
                              turn_username="ivr", turn_password="s3cret")
    assert ice_servers(settings) == [
        {"urls": "stun:stun.example.org:3478"},
        {"urls": ["turn:turn.example.org:3478?transport=udp"], "username": "ivr",
         "credential": "s3cret"}]


# -- offers ----------------------------------------------------------------------------------------

async def test_an_audio_offer_is_answered_with_opus_and_becomes_a_webrtc_call(server):
    response = await server.offer(await make_offer(), await server.token())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "answer" and "opus/48000/2" in answer["sdp"]
    assert "a=candidate:" in answer["sdp"] and "typ host" in answer["sdp"]
    [line] = server.lines
    assert line.info.transport == "webrtc" and answer["call_id"] == line.info.external_id


async def test_an_offer_without_a_token_gets_401_and_with_a_bad_one_403(server):
    sdp = await make_offer()
    missing = await server.offer(sdp, None)
    assert missing.status_code == 401 and "call token missing" in missing.json()["detail"]
    forged = await server.offer(sdp, "1.2.3")
    assert forged.status_code == 403 and "bad-signature" in forged.json()["detail"]
    api_token = await server.offer(sdp, API_TOKEN)  # the API token itself is no call token
    assert api_token.status_code == 403
    token = await server.token()
    assert (await server.offer(sdp, token)).status_code == 200
    again = await server.offer(sdp, token)
    assert again.status_code == 403 and "used" in again.json()["detail"]
    assert len(server.lines) == 1


async def test_an_expired_token_gets_403():
    server = Server(token_ttl_s=0.2)
    try:
        token = await server.token()
        await asyncio.sleep(0.4)
        response = await server.offer(await make_offer(), token)
        assert response.status_code == 403 and "expired" in response.json()["detail"]
        assert server.lines == []
    finally:
        await server.close()


@pytest.mark.parametrize("sdp", [
    "hello",
    "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n",  # no ICE, no DTLS
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio abc RTP/AVP 0\r\n",
    "",
])
async def test_a_malformed_sdp_offer_gets_400(server, sdp):
    response = await server.offer(sdp, await server.token())
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert server.lines == []


async def test_a_body_that_is_not_an_offer_gets_400(server):
    for body in ({"type": "answer", "sdp": "v=0"}, {"type": "offer", "sdp": 5}):
        response = await server.offer(None, await server.token(), body)
        assert response.status_code == 400
    raw = await server.client.post("/api/webrtc/offer", content=b"{not json",
                                   headers={"Authorization": f"Bearer {await server.token()}"})
    assert raw.status_code == 400 and "JSON" in raw.json()["detail"]


async def test_an_offer_without_audio_gets_400(server):
    no_audio = await make_offer(audio=False)
    response = await server.offer(no_audio, await server.token())
    assert response.status_code == 400 and "no audio" in response.json()["detail"]
    pcmu_only = (await make_offer()).replace("a=rtpmap:96 opus/48000/2\r\n", "")
    response = await server.offer(pcmu_only, await server.token())
    assert response.status_code == 400 and "Opus" in response.json()["detail"]
    assert server.lines == []


async def test_an_oversized_offer_gets_413(server):
    sdp = await make_offer() + "a=x-padding:" + "x" * 30000 + "\r\n"
    response = await server.offer(sdp, await server.token())
    assert response.status_code == 413


async def test_more_calls_than_allowed_get_503_with_retry_after(server):
    server.accepting = False
    response = await server.offer(await make_offer(), await server.token())
    assert response.status_code == 503 and response.headers["retry-after"] == "10"
    assert "no more calls" in response.json()["detail"]
    assert server.lines == []


def test_audio_problem_reads_chromes_offer_shape():
    chrome = ("v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
              "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8\r\nc=IN IP4 0.0.0.0\r\n"
              "a=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n"
              "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n")
    assert audio_problem(chrome) is None
    assert "no active Opus" in audio_problem(chrome.replace("m=audio 9", "m=audio 0"))
    assert "no active Opus" in audio_problem(chrome.replace("a=sendrecv", "a=inactive"))


async def test_the_callers_audio_waits_one_packet_in_aiortcs_jitter_buffer_not_four(server):
    """aiortc has no setting for it: the receiver's buffer is replaced (and a change in aiortc's
    internals would show here, and in the log, rather than silently cost 60 ms a turn)."""
    response = await server.offer(await make_offer(), await server.token())
    assert response.status_code == 200
    [line] = server.lines
    receiver = next(t.receiver for t in line.pc.getTransceivers() if t.kind == "audio")
    assert receiver._RTCRtpReceiver__jitter_buffer._prefetch == 1
