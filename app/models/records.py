"""Records the pipeline publishes: availability, channel availability, postings, batches, DLQ, drift."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


def json_bytes(model: BaseModel) -> bytes:
    """The bytes of `model.model_dump_json().encode()`, without the round trip through a str:
    pydantic-core writes bytes, which `model_dump_json` decodes for the caller to encode again
    (~1 µs of a 1 KB record, and every stage encodes several records per raw event)."""
    return model.__pydantic_serializer__.to_json(model)


def compact_json(model: BaseModel) -> bytes:
    """`json_bytes` without the fields at their defaults, for records that only this code reads back,
    with the same model (a position in its table, an internal ledger record): a position is ~170
    bytes instead of ~350 and read in 3.7 instead of 5.5 µs. A default left out reads back equal,
    not always as written (a discount of "0.00" comes back as Decimal("0")), and a scan of the raw
    bytes must not look for a field at its default (agents/expiry.py)."""
    return model.__pydantic_serializer__.to_json(model, exclude_defaults=True)


def holds_entries(field: str) -> Callable[[bytes], bool]:
    """A check whether a record's stored JSON (`json_bytes` or `compact_json`) has an entry in its
    dict `field`, without parsing it, for sweeps that read every record and act on the few that do:
    an empty dict is written `"field":{}`, or left out at its default, so never as `"field":{"`."""
    needle = b'"%s":{"' % field.encode()
    return lambda encoded: needle in encoded


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> bytes:
        return json_bytes(self)


class Published(Record):
    """A record of a public output topic: `schema_version` names its shape in docs/schemas/<topic>.json,
    so a consumer can tell a changed shape from a bug. Bump it in the model whose shape changes."""

    schema_version: int = 1


# --- Availability --------------------------------------------------------------------------------

class Cause(Record):
    movement_id: str
    movement_type: str
    source_system: str
    source_event_id: str
    correlation_id: str


class AvailabilityRecord(Published):
    sku: str
    location_id: str
    on_hand: int
    reserved: int
    quality_control: int
    damaged: int
    in_transit: int
    safety_stock: int
    available: int
    previous_available: int
    version: int
    negative: bool
    # Units the movement named beyond what the position held: a FULFIL beyond its open reservation,
    # a disposition, write-off or repair beyond quality_control or damaged (SPEC §3).
    unmatched_quantity: int = 0
    cause: Cause
    occurred_at: datetime
    emitted_at: datetime


class ChannelAvailability(Published):
    channel: str
    sku: str
    available: int
    by_location: dict[str, int]
    version: int
    emitted_at: datetime


# --- Errors --------------------------------------------------------------------------------------

class ErrorCode(StrEnum):
    """Why a raw record could not be processed (SPEC §4). One enum, used by every stage."""

    MALFORMED_JSON = "MALFORMED_JSON"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    UNKNOWN_ITEM = "UNKNOWN_ITEM"
    UNKNOWN_LOCATION = "UNKNOWN_LOCATION"
    UNKNOWN_RESERVATION = "UNKNOWN_RESERVATION"
    UNIT_OF_MEASURE = "UNIT_OF_MEASURE"
    INACTIVE_ITEM = "INACTIVE_ITEM"
    OUT_OF_RANGE = "OUT_OF_RANGE"            # a number or date beyond the limits of SPEC §4
    TOO_LARGE = "TOO_LARGE"                  # a record, identifier or list beyond its size limit
    PROCESSING_ERROR = "PROCESSING_ERROR"    # a stage raised on the record: the exception's type and message


class Rejection(Record):
    """Bad input as a value: what went wrong, before we know where the raw record came from."""

    error_code: ErrorCode
    error_detail: str
    source_event_id: str | None = None


class DeadLetter(Published):
    source_topic: str
    partition: int | None
    offset: int | None
    key: str | None
    raw_value: str                      # whole, or its first part when `raw_truncated` (SPEC §4: a letter fits)
    error_code: ErrorCode
    error_detail: str
    received_at: datetime
    source_system: str | None = None
    source_event_id: str | None = None
    raw_size: int = 0                   # bytes of the whole raw value
    raw_sha256: str = ""                # of the whole raw value, to match it with the producer's copy
    raw_truncated: bool = False
    stage: str | None = None            # the stage that dead-lettered it (ingest, positions, finance, ...)
    app_id: str | None = None           # the deployment (APP_ID) that wrote it: apps sharing a cluster share the DLQ


# --- Finance -------------------------------------------------------------------------------------

class PostingKind(StrEnum):
    SALE_REVENUE = "SALE_REVENUE"
    COGS = "COGS"
    RETURN_REVENUE = "RETURN_REVENUE"
    RETURN_COGS = "RETURN_COGS"
    RECEIPT = "RECEIPT"
    TRANSFER_OUT = "TRANSFER_OUT"
    TRANSFER_IN = "TRANSFER_IN"
    SHRINK = "SHRINK"
    COUNT_VARIANCE = "COUNT_VARIANCE"
    LATE_COUNT_REVERSAL = "LATE_COUNT_REVERSAL"
    WRITE_OFF = "WRITE_OFF"
    COST_ADJUSTMENT = "COST_ADJUSTMENT"
    LOST_IN_TRANSIT = "LOST_IN_TRANSIT"


class PostingLine(Record):
    account: str
    debit: Decimal
    credit: Decimal
    sku: str | None = None
    quantity: int | None = None


class Posting(Published):
    posting_id: str
    kind: PostingKind
    legal_entity: str
    location_id: str
    business_date: date
    currency: str
    source_system: str
    source_event_id: str
    correlation_id: str
    movement_id: str
    lines: list[PostingLine]
    created_at: datetime


class FinanceExceptionCode(StrEnum):
    NO_COST = "NO_COST"
    TENDER_MISMATCH = "TENDER_MISMATCH"
    UNKNOWN_LEGAL_ENTITY = "UNKNOWN_LEGAL_ENTITY"
    UNBALANCED = "UNBALANCED"
    MISSING_PRICE = "MISSING_PRICE"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"


class FinanceException(Published):
    source_event_id: str
    source_system: str
    movement_id: str | None
    location_id: str | None
    reason_code: FinanceExceptionCode
    detail: str
    created_at: datetime


class JournalBatch(Published):
    batch_id: str
    legal_entity: str
    location_id: str
    business_date: date
    currency: str
    late: bool
    sequence: int                       # 0 for the day batch, 1.. for late batches after it
    totals: dict[str, dict[str, Decimal]]  # account -> {"debit": .., "credit": ..}
    posting_ids: list[str]              # the first 1,000 postings it covers (all of them when posting_count <= 1,000)
    posting_count: int = 0              # postings it covers
    posting_digest: str = ""            # XOR of their ids' SHA-256, hex (app/domain/day_batches.posting_digest_of)
    control: dict[str, str]             # named control totals, as strings (units or money)
    closed_at: datetime


# --- The ERP (SPEC §9) ---------------------------------------------------------------------------

class ErpStatus(StrEnum):
    POSTED = "POSTED"        # this poster created and posted the entry
    DUPLICATE = "DUPLICATE"  # an entry with the batch id as reference was already posted
    REJECTED = "REJECTED"    # the ERP refused it for a business reason (finance.erp_rejections)


class ErpAck(Published):
    """`finance.erp_acks`: what became of one journal batch in the ERP (keyed by batch_id)."""

    batch_id: str
    status: ErpStatus
    erp_reference: str | None   # the ERP's id of the entry (Tryton: account.move id), None if rejected
    attempts: int               # ERP calls made for this batch, retries included
    posted_at: datetime


class ErpRejection(Published):
    """`finance.erp_rejections`: a batch the ERP refused, with the ERP's own message."""

    batch_id: str
    legal_entity: str
    location_id: str
    business_date: date
    message: str
    rejected_at: datetime


# --- Reconciliation ------------------------------------------------------------------------------

class ReconStatus(StrEnum):
    """How one SKU of an ERP snapshot compares with the pipeline's position (docs/RECONCILIATION.md)."""

    MATCHED = "MATCHED"
    DRIFT = "DRIFT"                              # both sides know the SKU, on_hand differs
    MISSING_IN_PIPELINE = "MISSING_IN_PIPELINE"  # ERP holds units, the pipeline has no position
    MISSING_IN_ERP = "MISSING_IN_ERP"            # the pipeline held units as of, the snapshot lacks the SKU


class ReconComparison(Record):
    """One SKU of a snapshot compared at the owner of its position partition."""

    sku: str
    erp_on_hand: int | None
    pipeline_on_hand: int | None          # on_hand as of the snapshot's as_of
    status: ReconStatus
    correction_movement_id: str | None = None  # the ADJUST raised for it (correction mode only)

    @property
    def difference(self) -> int:
        """Pipeline minus ERP: positive when the pipeline shows more units than the ERP ledger."""
        return (self.pipeline_on_hand or 0) - (self.erp_on_hand or 0)


class ReconCheck(Record):
    """Internal (`internal.reconciliation-checks`): a snapshot's balances for the SKUs of one partition.

    Sent to an explicit partition, the same number the SKUs' `inventory.movements` records hash to, so
    the worker that owns those positions compares them and lists the location's other positions there.
    """

    snapshot_id: str
    location_id: str
    as_of: datetime
    partition: int
    partitions: int
    balances: dict[str, int]              # sku -> ERP on_hand
    snapshot_received_at: datetime | None = None  # when the snapshot reached Kafka (correction guard)


class ReconResult(Record):
    """Internal (`internal.reconciliation-results`, key LOCATION): one chunk of one partition's check."""

    snapshot_id: str
    location_id: str
    as_of: datetime
    partition: int
    partitions: int
    chunk: int = 0
    chunks: int = 1
    comparisons: list[ReconComparison]
    checked_at: datetime
    movement_backlog: int = 0             # movements not yet fetched at the owner when it checked
    as_of_exact: bool = True              # False: as_of is older than DEDUPE_RETENTION


class DriftRecord(Published):
    location_id: str
    sku: str
    erp_on_hand: int | None
    pipeline_on_hand: int | None
    difference: int                       # pipeline_on_hand - erp_on_hand (a missing side counts as 0)
    snapshot_id: str
    as_of: datetime
    checked_at: datetime
    kind: str = "DRIFT"  # DRIFT, MISSING_IN_PIPELINE, MISSING_IN_ERP
    correction_movement_id: str | None = None


class ReconciliationSummary(Published):
    """One snapshot at one location; also the value of the `reconciliation-summaries` table."""

    location_id: str
    snapshot_id: str
    as_of: datetime
    compared: int
    matched: int
    drifted: int
    missing_in_pipeline: int
    missing_in_erp: int
    checked_at: datetime
    kind: str = "SUMMARY"
    complete: bool = True                 # every partition of the snapshot has reported
    partitions: int = 0
    parts_received: list[str] = []        # "partition.chunk" already folded: redeliveries count once
    chunks_by_partition: dict[str, int] = {}
    part_records: dict[str, str] = {}     # "partition.chunk" -> "p@offset" of the result that counted it
    net_difference: int = 0               # sum of differences (pipeline - ERP) over the snapshot
    corrections: int = 0                  # ADJUST movements raised (correction mode)
    movement_backlog: int = 0             # > 0: some owner was behind on movements when it checked
    as_of_exact: bool = True
    drifts: list[DriftRecord] = []        # the largest differences, at most MAX_SUMMARY_DRIFTS
    drifts_omitted: int = 0


class AuditEntry(Record):
    """One line of the audit trail (`ops.audit`, key actor, and the AUDIT_LOG JSON-lines file)."""

    actor: str
    action: str
    at: datetime
    detail: dict[str, object] = {}


# --- Lineage -------------------------------------------------------------------------------------

class TraceStage(StrEnum):
    RECEIVED = "received"
    MOVEMENT = "movement"
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    POSTING = "posting"
    FINANCE_EXCEPTION = "finance_exception"
    DEAD_LETTER = "dead_letter"


class TraceFact(Record):
    """One thing that happened to a source event, for `GET /v1/trace/...`."""

    source_system: str
    source_event_id: str
    stage: TraceStage
    at: datetime
    detail: dict[str, object] = {}
