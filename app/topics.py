"""Every Kafka topic of the contract (SPEC §2) in one place: names, keys, partitioning, retention."""
from __future__ import annotations

from dataclasses import dataclass

# Raw channel topics, each in its producer's own shape.
POS = "pos.transactions"
ECOM = "ecom.orders"
MARKETPLACE = "marketplace.orders"
OMS = "oms.reservations"
WMS = "wms.events"
INSPECTIONS = "returns.inspections"
RAW_TOPICS = (POS, ECOM, MARKETPLACE, OMS, WMS, INSPECTIONS)

MASTER_ITEMS = "master.items"
MASTER_LOCATIONS = "master.locations"
MASTER_TOPICS = frozenset({MASTER_ITEMS, MASTER_LOCATIONS})
ERP_SNAPSHOTS = "erp.stock_snapshots"

# Pipeline outputs (public contract).
MOVEMENTS = "inventory.movements"
AVAILABILITY = "inventory.availability"
CHANNEL_AVAILABILITY = "channel.availability"
POSTINGS = "finance.postings"
JOURNAL_BATCHES = "finance.journal_batches"
FINANCE_EXCEPTIONS = "finance.exceptions"
ERP_ACKS = "finance.erp_acks"                       # key batch_id: what the ERP did with each batch
ERP_REJECTIONS = "finance.erp_rejections"           # key batch_id: batches the ERP refused, with its message
DLQ = "inventory.dlq"
RECONCILIATION = "inventory.reconciliation"

# Internal hops (re-keyed streams between stages); not part of the public contract.
LEDGER = "internal.finance-ledger"                  # key LOCATION: applied movements and POS day facts
LINEAGE = "internal.lineage"                        # key SOURCE:EVENT_ID: trace facts
RECON_CHECKS = "internal.reconciliation-checks"     # one check per partition of inventory.movements
RECON_RESULTS = "internal.reconciliation-results"   # key LOCATION: comparison results to summarise
AUDIT = "ops.audit"                                 # key actor: admin actions

# Header of the internal control records the master stage sends to every partition of MOVEMENTS (a
# location's safety stock or channels changed: app.models.canonical.LocationChange). Records without
# it are canonical movements; a consumer of the audit trail skips records that carry it.
CONTROL_HEADER = "stock-sync-control"
LOCATION_CHANGE = b"location-change"

# Internal topics whose readers unpack packs of records (app/packs.py): a stage batch sends its
# keyed records of such a topic packed per partition (app/outbox.py, packed_runs).
PACKED_TOPICS = frozenset({LEDGER, LINEAGE})

# Input topics whose offsets are contiguous (never compacted, written without transactions): agents
# take their records strictly in offset order (agents/streams.py). Not the compacted master topics.
IN_ORDER_TOPICS = frozenset({*RAW_TOPICS, MOVEMENTS, LEDGER, LINEAGE, RECON_CHECKS, RECON_RESULTS})


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    retention_days: int | None = None
    audit_trail: bool = False   # kept AUDIT_RETENTION_MS (default forever), not the broker's 7 days


DAY = 86_400_000

TOPIC_SPECS: tuple[TopicSpec, ...] = (
    *(TopicSpec(t) for t in RAW_TOPICS),
    TopicSpec(MASTER_ITEMS, compacted=True),
    TopicSpec(MASTER_LOCATIONS, compacted=True),
    TopicSpec(ERP_SNAPSHOTS),
    TopicSpec(MOVEMENTS, audit_trail=True),
    TopicSpec(AVAILABILITY),
    TopicSpec(CHANNEL_AVAILABILITY),
    TopicSpec(POSTINGS, audit_trail=True),
    TopicSpec(JOURNAL_BATCHES, audit_trail=True),
    TopicSpec(FINANCE_EXCEPTIONS, audit_trail=True),
    TopicSpec(ERP_ACKS),
    TopicSpec(ERP_REJECTIONS),
    TopicSpec(DLQ, retention_days=30),
    TopicSpec(RECONCILIATION),
    TopicSpec(LEDGER),
    TopicSpec(LINEAGE, retention_days=7),
    TopicSpec(RECON_CHECKS),
    TopicSpec(RECON_RESULTS),
    TopicSpec(AUDIT, retention_days=365),
)


def replication_config(replication: int) -> dict[str, str]:
    """With three or more copies a write is acknowledged once two hold it, so one broker can be lost
    without losing acknowledged records or stopping the producers (SPEC §10)."""
    return {"min.insync.replicas": "2"} if replication >= 3 else {}


def topic_config(spec: TopicSpec, replication: int = 1, audit_retention_ms: int = -1) -> dict[str, str]:
    config: dict[str, str] = replication_config(replication)
    if spec.compacted:
        config["cleanup.policy"] = "compact"
    if spec.retention_days is not None:
        config["retention.ms"] = str(spec.retention_days * DAY)
    if spec.audit_trail:
        config["retention.ms"] = str(audit_retention_ms)
    return config
