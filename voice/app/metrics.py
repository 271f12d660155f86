"""Prometheus metrics of the serving process: calls, refusals and per-stage turn latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_MS_BUCKETS = (25, 50, 100, 200, 300, 400, 500, 700, 900, 1200, 1600, 2500, 4000, 8000)


class IvrMetrics:
    """One registry per server, so tests can run several servers in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls_active = Gauge("ivr_calls_active", "Calls in progress", registry=self.registry)
        self.calls_total = Counter("ivr_calls_total", "Calls ended, by end reason",
                                   ["reason"], registry=self.registry)
        self.refused_total = Counter("ivr_sip_refused_total", "SIP requests refused or ignored "
                                     "before a call started (code 0: dropped unanswered)",
                                     ["code", "reason"], registry=self.registry)
        self.stage_ms = Histogram("ivr_turn_stage_ms", "Time per stage of a caller turn",
                                  ["stage"], buckets=_MS_BUCKETS, registry=self.registry)
        self.turn_ms = Histogram("ivr_turn_total_ms", "End of caller speech to first reply "
                                 "sample handed to the transport", buckets=_MS_BUCKETS,
                                 registry=self.registry)
        self.frames_dropped = Counter("ivr_frames_dropped_total", "Caller frames dropped "
                                      "between PJSIP and the pipeline", registry=self.registry)

    def observe_turn(self, turn: dict) -> None:
        for stage, ms in (turn.get("stages") or {}).items():
            self.stage_ms.labels(stage).observe(ms)
        if turn.get("total_ms") is not None:
            self.turn_ms.observe(turn["total_ms"])
