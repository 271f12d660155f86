"""aiortc on its own event loop, in its own thread.

aiortc does its RTP, SRTP and pacing in Python on whatever loop it runs on. On the IVR's loop,
which also runs every call's pipeline, a busy moment delays our outgoing packets by more than a
frame (a bench counted about one in five), and the browser's jitter buffer grows to absorb it:
latency the caller hears. PJSIP avoids this with its own media thread; this is the same idea for
aiortc. Everything that touches a peer connection runs here; the call core's side of the line
stays on the IVR's loop, and the two exchange frames through deques and ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Coroutine
from typing import Any


class MediaLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="webrtc-media",
                                       daemon=True)
        self.thread.start()

    async def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the media loop and wait for it from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Start ``coro`` on the media loop; its concurrent future (``cancel()`` works)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)


@functools.cache
def media_loop() -> MediaLoop:
    """The process's one media loop, started on first use (a daemon thread: it ends with the
    process, after every call has closed its peer connection)."""
    return MediaLoop()
