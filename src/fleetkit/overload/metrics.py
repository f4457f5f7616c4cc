"""Prometheus metrics of admission control (``fleetkit_overload_*``), multiprocess-safe.

Gauges are per worker process and summed (``livesum``) or maxed (``livemax``) across workers
at scrape time; they are refreshed once per controller window (100 ms), not per request.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from fleetkit.overload.admission import AdmissionController

__all__ = ["IN_FLIGHT", "LIMIT", "LOOP_LAG", "QUEUED", "QUEUE_DELAY", "REFUSED", "SHEDDING",
           "publish"]

LIMIT = Gauge("fleetkit_overload_limit",
              "Adaptive concurrency limit (summed over worker processes).",
              multiprocess_mode="livesum")
IN_FLIGHT = Gauge("fleetkit_overload_in_flight",
                  "Requests holding an admission slot (summed over worker processes).",
                  multiprocess_mode="livesum")
QUEUED = Gauge("fleetkit_overload_queued", "Requests waiting in the admission queue.",
               multiprocess_mode="livesum")
QUEUE_DELAY = Gauge("fleetkit_overload_queue_delay_seconds",
                    "Mean time a request waited before running in the last window: event-loop "
                    "lag plus admission-queue wait (worst worker process).",
                    multiprocess_mode="livemax")
LOOP_LAG = Gauge("fleetkit_overload_loop_lag_seconds",
                 "Mean event-loop lag in the last window (worst worker process).",
                 multiprocess_mode="livemax")
SHEDDING = Gauge("fleetkit_overload_shedding",
                 "1 while the last window was over target (worst worker process).",
                 multiprocess_mode="livemax")
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
