"""Refused INVITEs as aggregated call records, so a flood cannot flood the call store.

Every refusal is counted in Prometheus (``ivr_sip_refused_total``). The store gets one row per
source address, response code and window (``window_s``, a minute by default): the first refusal
writes the row at once, with its caller and called numbers, and later ones in the same window
only raise its ``context.count`` (written when the window closes or the server stops). A flood of
4,000 INVITEs from one address is then one row a minute, not 4,000, and the row still says who
called, what they were told and how often.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace

from voice.app.callstore import CallRecord
from voice.transports.sip.messages import InviteInfo, source_host


@dataclass
class _Window:
    record: CallRecord
    opened: float
    count: int = 1
    written: int = 1  # the count last written to the store


class RefusalLog:
    """Aggregates refusals into records; the caller writes what each method returns."""

    def __init__(self, window_s: float = 60.0, max_open: int = 1024) -> None:
        self.window_s = window_s
        self.max_open = max_open
        self._open: dict[tuple[str, int], _Window] = {}

    def refused(self, invite: InviteInfo, code: int, why: str,
                now: float | None = None) -> list[CallRecord]:
        """Count one refusal; returns the records to write now (possibly none)."""
        now = now or time.time()
        out = self._close_expired(now)
        key = (source_host(invite.source), code)
        window = self._open.get(key)
        if window is not None:
            window.count += 1
            return out
        if len(self._open) >= self.max_open:  # many sources at once: flush the oldest
            oldest = min(self._open, key=lambda k: self._open[k].opened)
            out += self._flush(self._open.pop(oldest))
        digest = hashlib.sha1(f"{key}{now}".encode()).hexdigest()[:12]
        record = CallRecord(id=f"refused-{digest}", started_at=now,
                            sip_call_id=invite.sip_call_id, caller_number=invite.caller_number,
                            called_number=invite.called_number, source=invite.source,
                            ended_at=now, end_reason=f"refused-{code}",
                            context={"refusal": why, "count": 1, "window_s": self.window_s})
        self._open[key] = _Window(record, now)
        return out + [record]

    def expired(self, now: float | None = None) -> list[CallRecord]:
        """The final counts of windows that have closed."""
        return self._close_expired(now or time.time())

    def flush(self) -> list[CallRecord]:
        """Every open window's final count (at shutdown)."""
        out = []
        for window in self._open.values():
            out += self._flush(window)
        self._open.clear()
        return out

    def _close_expired(self, now: float) -> list[CallRecord]:
        out = []
        for key in [k for k, w in self._open.items() if now - w.opened >= self.window_s]:
            out += self._flush(self._open.pop(key))
        return out

    @staticmethod
    def _flush(window: _Window) -> list[CallRecord]:
        if window.count == window.written:
            return []
        window.written = window.count
        context = {**window.record.context, "count": window.count}
        return [replace(window.record, context=context)]
