"""A browser caller for tests and benchmarks: Debian's Chromium, headless, on ``/call``.

Chromium is started here (not by Playwright's launcher) so that a test owns its process and can
kill it outright, a peer that vanishes without closing; Playwright drives it over CDP. The
microphone is a fake device playing a WAV file once (``%noloop``); the page records what it
hears and measures each reply's latency on its own audio clock (``voice/app/web/call.js``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import free_port
from voice.audio import read_audio, resample, write_wav

CHROMIUM = Path("/usr/bin/chromium")
FAKE_RATE = 48000
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def fake_capture(source: Path, dest: Path, *, lead_s: float = 1.0, tail_s: float = 20.0) -> Path:
    """``source`` as Chromium's fake microphone wants it: 48 kHz 16-bit mono, with silence
    before (the call connects meanwhile) and after (the replies are heard)."""
    chunk = read_audio(source)
    speech = resample(chunk.samples, chunk.sample_rate, FAKE_RATE)
    pad = lambda s: np.zeros(int(s * FAKE_RATE), np.int16)
    write_wav(dest, np.concatenate([pad(lead_s), speech, pad(tail_s)]), FAKE_RATE)
    return dest


@dataclass
class BrowserCall:
    status: str
    status_text: str
    latencies_ms: list[int]
    turns: list[dict[str, Any]]
    call_id: str | None
    mic_onsets: list[float]  # the page's audio clock: where the caller's speech starts
    remote_start: float | None  # the same clock: the recording's first sample
    recording: np.ndarray = field(repr=False)  # what the page heard, from remote_start on
    mic: np.ndarray = field(repr=False)  # what the page sent, from mic_start on
    mic_start: float | None = None
    rate: int = 48000


class Browser:
    """One headless Chromium with a fake microphone playing ``capture``."""

    def __init__(self, capture: Path) -> None:
        self.capture = capture
        self.port = free_port()
        self.profile = Path(tempfile.mkdtemp(prefix="ivr-chromium-"))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> Browser:
        args = [str(CHROMIUM), *CHROMIUM_ARGS, f"--remote-debugging-port={self.port}",
                f"--user-data-dir={self.profile}",
                f"--use-file-for-fake-audio-capture={self.capture}%noloop", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/version", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError("chromium did not open its debugging port")

    def kill(self) -> None:
        """The whole browser gone at once (SIGKILL to its process group): nothing is closed."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


@contextlib.asynccontextmanager
async def call_page(http_port: int, key: str, capture: Path) -> AsyncIterator[tuple[Any, Browser]]:
    """The ``/call`` page in a fresh browser, with the access key filled in."""
    from playwright.async_api import async_playwright

    browser = Browser(capture).start()
    try:
        async with async_playwright() as playwright:
            cdp = await playwright.chromium.connect_over_cdp(f"http://127.0.0.1:{browser.port}")
            context = cdp.contexts[0]
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(f"http://127.0.0.1:{http_port}/call#key={key}")
            yield page, browser
            with contextlib.suppress(Exception):  # the browser may have been killed already
                await cdp.close()
    finally:
        browser.kill()


async def page_state(page: Any) -> BrowserCall:
    state = await page.evaluate("""() => ({status: ivrCall.status,
        text: document.getElementById('status').textContent, latencies: ivrCall.latencies,
        turns: ivrCall.turns, micOnsets: ivrCall.micOnsets, remoteStart: ivrCall.remoteStart,
        callId: ivrCall.callId, rate: ivrCall.sampleRate, micStart: ivrCall.micStart,
        recording: ivrCall.recording(), mic: ivrCall.recording("mic")})""")
    pcm = np.frombuffer(base64.b64decode(state["recording"]), dtype=np.int16)
    mic = np.frombuffer(base64.b64decode(state["mic"]), dtype=np.int16)
    return BrowserCall(status=state["status"], status_text=state["text"],
                       latencies_ms=list(state["latencies"]),
                       turns=list(state["turns"]), mic_onsets=list(state["micOnsets"]),
                       remote_start=state["remoteStart"], call_id=state["callId"],
                       recording=pcm, mic=mic, mic_start=state["micStart"],
                       rate=int(state["rate"] or FAKE_RATE))


async def place_call(http_port: int, key: str, capture: Path, *, turns: int,
                     timeout_s: float = 60.0, hang_up: bool = True, min_s: float = 0.0,
                     screenshot: Path | None = None) -> BrowserCall:
    """Call, wait at least ``min_s`` and until ``turns`` turns were reported and their replies
    were heard (or the timeout), optionally take a screenshot, hang up, and return what the
    page saw."""
    async with call_page(http_port, key, capture) as (page, _browser):
        await page.click("#call")
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if time.monotonic() - started < min_s:
                await asyncio.sleep(0.25)
                continue
            done = await page.evaluate(
                f"() => ivrCall.turns.length >= {turns} && !ivrCall.replyPlaying "
                "|| ['failed', 'ended'].includes(ivrCall.status)")
            if done:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(0.5)
        if screenshot is not None:
            await page.screenshot(path=str(screenshot), full_page=True)
        result = await page_state(page)
        if hang_up and result.status not in ("failed", "ended"):
            await page.click("#call")
            await asyncio.sleep(0.5)
        return result


def reply_onsets_in_file(call: BrowserCall, speech: np.ndarray, speech_rate: int) -> list[float]:
    """Where each reply became audible at the page, in seconds of the caller's recording
    ``speech`` (as the SIP caller reports them): the recording is found in what the microphone
    sent by cross-correlation, so both are on the page's audio clock."""
    from voice.transports.sip.caller import audible_onsets

    rate = 8000
    sent = resample(call.mic, call.rate, rate).astype(np.float64)
    ref = resample(speech, speech_rate, rate).astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(sent) + len(ref))))
    corr = np.fft.irfft(np.fft.rfft(sent, n) * np.conj(np.fft.rfft(ref, n)), n)
    offset_s = int(np.argmax(corr[:len(sent)])) / rate  # the recording's start in ``mic``
    zero = call.mic_start + offset_s
    heard = resample(call.recording, call.rate, rate)
    return [round(call.remote_start + t - zero, 3) for t in audible_onsets(heard)
            if call.remote_start + t > zero]
