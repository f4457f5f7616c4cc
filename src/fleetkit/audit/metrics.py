"""Prometheus metrics of the audit pipeline (producer, spool, consumer, sink).

Counters are incremented once per batch (with the batch's size), never per event, so metrics stay
off the 100K events/s hot path.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_EVENTS",
    "CONSUMER_LAG",
    "CONSUMER_PENDING",
    "DEAD_LETTERS",
    "DUPLICATES",
    "ENTRY_EVENTS",
    "EVENTS_LOGGED",
    "EVENTS_REPLAYED",
    "EVENTS_SPOOLED",
    "INVALID_EVENTS",
    "ROWS_INSERTED",
    "SINK_ERRORS",
    "SPOOL_BYTES",
]

_SIZES = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)

EVENTS_LOGGED = Counter("fleetkit_audit_events_logged_total",
                        "Events made durable by the producer.", ["mode"])
INVALID_EVENTS = Counter("fleetkit_audit_invalid_events_total", "Events refused at log().")
ENTRY_EVENTS = Histogram("fleetkit_audit_entry_events", "Events packed into one stream entry.",
                         buckets=_SIZES)
EVENTS_SPOOLED = Counter("fleetkit_audit_events_spooled_total",
                         "Events written to the disk spool while Redis was unavailable.")
EVENTS_REPLAYED = Counter("fleetkit_audit_events_replayed_total",
                          "Spooled events re-sent to Redis.")
SPOOL_BYTES = Gauge("fleetkit_audit_spool_bytes", "Bytes waiting in the disk spool.")

ROWS_INSERTED = Counter("fleetkit_audit_rows_inserted_total", "Rows inserted by the sink.",
                        ["shard"])
DUPLICATES = Counter("fleetkit_audit_duplicates_total",
                     "Events skipped by ON CONFLICT (already stored: redelivery or retry).",
                     ["shard"])
BATCH_EVENTS = Histogram("fleetkit_audit_batch_events", "Events per sink transaction.",
                         buckets=_SIZES)
DEAD_LETTERS = Counter("fleetkit_audit_dead_letters_total",
                       "Entries moved to the dead-letter stream.", ["shard"])
SINK_ERRORS = Counter("fleetkit_audit_sink_errors_total", "Failed sink writes.", ["kind"])
CONSUMER_LAG = Gauge("fleetkit_audit_consumer_lag",
                     "Entries in the shard not yet delivered to the group.", ["shard"])
CONSUMER_PENDING = Gauge("fleetkit_audit_consumer_pending",
                         "Entries delivered and not yet acknowledged.", ["shard"])
