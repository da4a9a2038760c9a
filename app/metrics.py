"""Prometheus metrics of the pipeline: one registry, named for the retail process they measure."""
from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("stock_sync_events_in_total", "Raw channel records received", ["source", "type"])
DUPLICATES = Counter("stock_sync_duplicate_movements_total", "Movements ignored as already applied")
REPLAYS = Counter("stock_sync_replayed_movements_total",
                  "Movement records delivered again after a stop, whose outputs were emitted again")
PARTITIONS_FETCHED_AGAIN = Counter("stock_sync_partitions_fetched_again_total",
                                   "Partitions whose records stopped reaching their agent, fetched again",
                                   ["topic"])
DLQ_RECORDS = Counter("stock_sync_dlq_records_total", "Records dead-lettered", ["code"])
MOVEMENTS_APPLIED = Counter("stock_sync_movements_applied_total", "Movements applied to positions", ["type"])
AVAILABILITY_OUT = Counter("stock_sync_availability_records_total", "inventory.availability records emitted")
CHANNEL_OUT = Counter("stock_sync_channel_records_total", "channel.availability records emitted", ["channel"])
TIMER_ERRORS = Counter(
    "stock_sync_timer_errors_total",
    "Timer sweeps, or single items of a sweep, that raised; the timer goes on and tries again at its "
    "next interval (agents/timers.py)", ["timer"])
POSTINGS_OUT = Counter("stock_sync_postings_total", "Journal postings emitted", ["kind"])
FINANCE_EXCEPTIONS = Counter("stock_sync_finance_exceptions_total", "Finance exceptions", ["reason"])
UNMATCHED_UNITS = Counter("stock_sync_unmatched_units_total",
                          "Units a movement named beyond what its position held (FULFIL without reservation, "
                          "disposition, write-off or repair beyond its bucket, close of an unknown transfer)",
                          ["type"])
SALE_COSTS_FORGOTTEN = Counter("stock_sync_sale_costs_forgotten_total",
                               "Sales past SALE_COST_RETENTION removed from the sale-costs table")
NEGATIVE_POSITIONS = Counter("stock_sync_negative_position_updates_total",
                             "Position updates that left on_hand negative")
DRIFT = Counter("stock_sync_reconciliation_drift_total", "SKUs found drifting from ERP snapshots", ["kind"])
DRIFT_LAST = Gauge("stock_sync_reconciliation_last_drifted", "SKUs drifted in the last snapshot", ["location"])
LATENCY = Histogram(
    "stock_sync_event_to_availability_seconds",
    "From a source event's occurred_at (or ingest time) to its availability record",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# The ERP poster (SPEC §9). Gauges have no _total suffix: they are levels, not counts.
ERP_BATCHES_WAITING = Gauge("stock_sync_erp_batches_waiting",
                            "Journal batches not yet posted to the ERP (the poster's lag on finance.journal_batches)")
ERP_OLDEST_WAITING = Gauge("stock_sync_erp_oldest_waiting_seconds",
                           "Age of the oldest journal batch waiting for the ERP (0 when none waits)")
ERP_POSTS = Counter("stock_sync_erp_posts_total", "Journal batches the ERP acknowledged", ["status"])
ERP_CALL_SECONDS = Histogram("stock_sync_erp_call_seconds", "ERP call latency", ["method", "outcome"],
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ERP_REACHABLE = Gauge("stock_sync_erp_reachable",
                      "1 when the ERP answered the poster's last call, else 0 (only where the poster runs)",
                      ["erp_url"])
# A stage's micro-batches (agents/streams.py: each_batch, and each_event's lists): how many records
# each took and how long it took to apply and hand to the producer. Small batches at a steady rate cost more per record than
# a drain's full ones; these show which stage a worker's time goes to.
STAGE_BATCH_RECORDS = Histogram("stock_sync_stage_batch_records", "Records per micro-batch of a stage", ["stage"],
                                buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))
STAGE_BATCH_SECONDS = Histogram("stock_sync_stage_batch_seconds",
                                "Time a stage's micro-batch took to apply (phase apply) and to hand its outputs to "
                                "the producer (phase send: waits while the producer still holds the partition's "
                                "previous record batch)", ["stage", "phase"],
                                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
STAGE_ERRORS = Counter("stock_sync_stage_errors_total",
                       "Records a stage raised on, dead-lettered as PROCESSING_ERROR", ["stage", "error"])
RECORDS_STUCK = Gauge("stock_sync_records_waiting_for_dead_letter",
                      "Records that could not be dead-lettered yet (the DLQ cannot be written); their partition waits")
PRODUCER_BUFFER_FULL = Counter(
    "stock_sync_producer_buffer_full_total",
    "Times Faust's producer buffer was full and a send waited for a flush (back-pressure from Kafka)")


@functools.lru_cache(maxsize=4096)
def labelled(metric, *values: str):
    """`metric.labels(*values)`, looked up once: `labels` takes a lock and validates its arguments
    on every call, a few µs on paths that count every movement and posting. Label values here come
    from enums and master data (movement types, posting kinds, channels), so the cache stays small."""
    return metric.labels(*values)
