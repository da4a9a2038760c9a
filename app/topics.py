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
SKU_AVAILABILITY = "internal.availability-by-sku"   # key SKU: feeds channel availability
LEDGER = "internal.finance-ledger"                  # key LOCATION: applied movements and POS day facts
LINEAGE = "internal.lineage"                        # key SOURCE:EVENT_ID: trace facts
RECON_CHECKS = "internal.reconciliation-checks"     # one check per partition of inventory.movements
RECON_RESULTS = "internal.reconciliation-results"   # key LOCATION: comparison results to summarise
AUDIT = "ops.audit"                                 # key actor: admin actions

# Input topics whose offsets are contiguous (never compacted, written without transactions): agents
# take their records strictly in offset order (agents/streams.py). Not the compacted master topics.
IN_ORDER_TOPICS = frozenset({*RAW_TOPICS, MOVEMENTS, SKU_AVAILABILITY, LEDGER, LINEAGE, RECON_CHECKS, RECON_RESULTS})


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    retention_days: int | None = None


DAY = 86_400_000

TOPIC_SPECS: tuple[TopicSpec, ...] = (
    *(TopicSpec(t) for t in RAW_TOPICS),
    TopicSpec(MASTER_ITEMS, compacted=True),
    TopicSpec(MASTER_LOCATIONS, compacted=True),
    TopicSpec(ERP_SNAPSHOTS),
    TopicSpec(MOVEMENTS),
    TopicSpec(AVAILABILITY),
    TopicSpec(CHANNEL_AVAILABILITY),
    TopicSpec(POSTINGS),
    TopicSpec(JOURNAL_BATCHES),
    TopicSpec(FINANCE_EXCEPTIONS),
    TopicSpec(ERP_ACKS),
    TopicSpec(ERP_REJECTIONS),
    TopicSpec(DLQ, retention_days=30),
    TopicSpec(RECONCILIATION),
    TopicSpec(SKU_AVAILABILITY),
    TopicSpec(LEDGER),
    TopicSpec(LINEAGE, retention_days=7),
    TopicSpec(RECON_CHECKS),
    TopicSpec(RECON_RESULTS),
    TopicSpec(AUDIT, retention_days=365),
)


def topic_config(spec: TopicSpec) -> dict[str, str]:
    config: dict[str, str] = {}
    if spec.compacted:
        config["cleanup.policy"] = "compact"
    if spec.retention_days is not None:
        config["retention.ms"] = str(spec.retention_days * DAY)
    return config
