"""Prometheus metrics of the serving process: calls, refusals, per-stage turn latency, and the
contact-centre figures.

Two kinds: counters and histograms of this process (they start at zero with it, as Prometheus
expects of counters), and gauges of the contact-centre figures of the last day derived from the
stored records at scrape time (:class:`StoredFigures`), which a restart does not reset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from voice.app.figures import Figures

_MS_BUCKETS = (25, 50, 100, 200, 300, 400, 500, 700, 900, 1200, 1600, 2500, 4000, 8000)
_S_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)


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
        self.outcomes = Counter("ivr_call_outcomes_total", "Answered calls ended, by outcome "
                                "(contained, transferred, abandoned, failed)", ["outcome"],
                                registry=self.registry)
        self.transfers = Counter("ivr_transfers_total", "Calls handed to a human, by queue and "
                                 "reason", ["queue", "reason"], registry=self.registry)
        self.handle_s = Histogram("ivr_handle_time_seconds", "Time in the IVR per answered "
                                  "call (to the hand-over when transferred)",
                                  buckets=_S_BUCKETS, registry=self.registry)

    def observe_turn(self, turn: dict) -> None:
        for stage, ms in (turn.get("stages") or {}).items():
            self.stage_ms.labels(stage).observe(ms)
        if turn.get("total_ms") is not None:
            self.turn_ms.observe(turn["total_ms"])

    def observe_call(self, journey: dict) -> None:
        """An answered call ended (``context.journey``, see ``voice.app.journey``)."""
        self.outcomes.labels(journey["outcome"]).inc()
        if journey.get("queue"):
            self.transfers.labels(journey["queue"],
                                  journey.get("escalation_reason") or "unknown").inc()
        if journey.get("ivr_s") is not None:
            self.handle_s.observe(journey["ivr_s"])


class StoredFigures(Collector):
    """Gauges of the last ``window_s`` of stored records, computed at scrape time (at most once
    per ``ttl_s``: a scrape every few seconds must not re-read a day of calls each time).

    prometheus_client's own metric types keep their values in memory and start at zero with
    the process; a custom collector is its documented way to export values that live elsewhere.
    """

    def __init__(self, load: Callable[[float, float], Figures], window_s: float = 86400.0,
                 ttl_s: float = 30.0) -> None:
        self.load = load
        self.window_s = window_s
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, Figures] | None = None

    def figures(self) -> Figures:
        with self._lock:
            now = time.time()
            if self._cached is None or now - self._cached[0] > self.ttl_s:
                self._cached = (now, self.load(now - self.window_s, now))
            return self._cached[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fig = self.figures()
        window = f"last {self.window_s / 3600:g} h of stored records"

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, f"{doc} ({window})")
            family.add_metric([], float("nan") if value is None else value)
            return family

        yield gauge("ivr_answered_calls", "Answered calls", fig.answered)
        yield gauge("ivr_containment_ratio", "Share of answered calls served without a human",
                    fig.containment_rate)
        yield gauge("ivr_transfer_ratio", "Share of answered calls handed to a human",
                    fig.transfer_rate)
        yield gauge("ivr_abandon_ivr_ratio", "Share of answered calls that left before being "
                    "served or handed over", fig.abandon_ivr_rate)
        yield gauge("ivr_abandon_hold_ratio", "Share of transfers abandoned on hold",
                    fig.abandon_hold_rate)
        yield gauge("ivr_repeat_call_ratio", "Share of calls from a number that called in the "
                    "7 days before", fig.repeat_rate)
        yield gauge("ivr_escalation_accuracy_ratio", "Share of agents' dispositions saying the "
                    "caller needed a human", fig.escalation_accuracy)
        yield gauge("ivr_handle_time_p50_seconds", "Median time in the IVR",
                    fig.handle_time_s.p50)
        outcomes = GaugeMetricFamily("ivr_calls_by_outcome", f"Answered calls by outcome "
                                     f"({window})", labels=["outcome"])
        for outcome, n in fig.outcomes.items():
            outcomes.add_metric([outcome], n)
        yield outcomes
        queues = GaugeMetricFamily("ivr_transfers_by_queue", f"Transfers by queue ({window})",
                                   labels=["queue"])
        for queue, n in fig.transfers_by_queue.items():
            queues.add_metric([queue], n)
        yield queues
        reasons = GaugeMetricFamily("ivr_transfers_by_reason", f"Transfers by escalation "
                                    f"reason ({window})", labels=["reason"])
        for reason, n in fig.transfers_by_reason.items():
            reasons.add_metric([reason], n)
        yield reasons
        funnel = GaugeMetricFamily("ivr_intent_funnel_calls", f"Calls per intent and funnel "
                                   f"step: recognized, served, contained ({window})",
                                   labels=["intent", "step"])
        for intent, steps in fig.funnel.items():
            for step, n in steps.items():
                funnel.add_metric([intent, step], n)
        yield funnel
        dispositions = GaugeMetricFamily("ivr_dispositions", f"Agents' dispositions after a "
                                         f"transfer ({window})", labels=["disposition"])
        for disposition, n in fig.dispositions.items():
            dispositions.add_metric([disposition], n)
        yield dispositions
        latency = GaugeMetricFamily("ivr_stage_latency_ms", f"Turn latency by stage, p50 and "
                                    f"p95 ({window})", labels=["stage", "quantile"])
        for stage, spread in fig.latency_ms.items():
            for q, value in (("0.5", spread.p50), ("0.95", spread.p95)):
                if value is not None:
                    latency.add_metric([stage, q], value)
        yield latency
