"""Prometheus metrics of admission control (``fleetkit_overload_*``), multiprocess-safe.

Gauges are per worker process and summed (``livesum``) or maxed (``livemax``) across workers
at scrape time; they are refreshed once per controller window (100 ms), not per request.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from fleetkit.overload.admission import AdmissionController

__all__ = ["IN_FLIGHT", "LIMIT", "LOOP_LAG", "QUEUED", "QUEUE_DELAY", "REFUSED", "SHEDDING",
           "publish"]


def _summed(name: str, doc: str) -> Gauge:
    # The help text says how the workers' values combine; made here with the mode it names,
    # so the two cannot disagree.
    return Gauge(name, f"{doc} (summed over worker processes).", multiprocess_mode="livesum")


def _worst(name: str, doc: str) -> Gauge:
    return Gauge(name, f"{doc} (worst worker process).", multiprocess_mode="livemax")


LIMIT = _summed("fleetkit_overload_limit", "Adaptive concurrency limit")
IN_FLIGHT = _summed("fleetkit_overload_in_flight", "Requests holding an admission slot")
QUEUED = _summed("fleetkit_overload_queued", "Requests waiting in the admission queue")
QUEUE_DELAY = _worst("fleetkit_overload_queue_delay_seconds",
                     "Mean time a request waited before running in the last window: event-loop "
                     "lag plus admission-queue wait")
LOOP_LAG = _worst("fleetkit_overload_loop_lag_seconds", "Mean event-loop lag in the last window")
SHEDDING = _worst("fleetkit_overload_shedding", "1 while the last window was over target")
REFUSED = Counter("fleetkit_overload_refused_total",
                  "Requests refused with 503 by admission control, by class and reason "
                  "(limit: at the door; queue_timeout; evicted: by a more important request).",
                  ["priority", "reason"])


def publish(controller: AdmissionController) -> None:
    """Copy the controller's state into the gauges (its ``on_window`` hook)."""
    LIMIT.set(controller.limit)
    IN_FLIGHT.set(controller.in_flight)
    QUEUED.set(controller.queued)
    QUEUE_DELAY.set(controller.queue_delay)
    LOOP_LAG.set(controller.loop_lag)
    SHEDDING.set(1 if controller.overloaded else 0)
