"""Reconciliation rules (SPEC §6): an ERP snapshot against the pipeline's positions as of its time.

Pure functions: comparing one SKU, checking one partition's share of a snapshot, folding the
partitions' results into one summary per snapshot, the optional correction movement, and the
operator's report. The design and its limits are in docs/RECONCILIATION.md.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime


from app.domain.parsing import parse_record
from app.domain.positions import on_hand_as_of
from app.domain.sources.common import build_movement, movement_id
from app.models.canonical import Movement, MovementType, Position, Role, SourceSystem
from app.models.raw import StockSnapshot
from app.models.records import (
    DriftRecord, ErrorCode, ReconciliationSummary, ReconComparison, ReconResult, ReconStatus, Rejection,
)

MAX_SUMMARY_DRIFTS = 100      # drift records kept in the summary table value (all go to the topic)
RESULT_CHUNK = 1000           # comparisons per result record, so a big store never hits max.message.bytes


# --- The snapshot at the edge ------------------------------------------------------------------------

def parse_snapshot(raw: bytes) -> StockSnapshot | Rejection:
    """An `erp.stock_snapshots` record, or why it cannot be reconciled; never raises."""
    snapshot = parse_record(StockSnapshot, raw, "snapshot_id")
    if isinstance(snapshot, Rejection):
        return snapshot
    seen: set[str] = set()
    for balance in snapshot.balances:
        if balance.sku in seen:
            # Two balances for one SKU cannot both be the ledger's figure: ask ERP, do not guess.
            return Rejection(error_code=ErrorCode.SCHEMA_INVALID, source_event_id=snapshot.snapshot_id,
                             error_detail=f"sku {balance.sku!r} is listed twice in snapshot {snapshot.snapshot_id!r}")
        seen.add(balance.sku)
    return snapshot


# --- Comparing -------------------------------------------------------------------------------------

def compare(sku: str, erp_on_hand: int | None, position: Position | None, as_of: datetime) -> ReconComparison | None:
    """One SKU: ERP's on_hand (None: not in the snapshot) against the position's on_hand as of `as_of`.

    None when there is nothing to say: neither side holds units (ERP may omit zero balances, and a
    position opened after as_of held nothing then).
    """
    pipeline = on_hand_as_of(position, as_of) if position is not None else None
    if erp_on_hand is None:
        if not pipeline:
            return None
        return ReconComparison(sku=sku, erp_on_hand=None, pipeline_on_hand=pipeline,
                               status=ReconStatus.MISSING_IN_ERP)
    if position is None:
        status = ReconStatus.MATCHED if erp_on_hand == 0 else ReconStatus.MISSING_IN_PIPELINE
        return ReconComparison(sku=sku, erp_on_hand=erp_on_hand, pipeline_on_hand=None, status=status)
    status = ReconStatus.MATCHED if pipeline == erp_on_hand else ReconStatus.DRIFT
    return ReconComparison(sku=sku, erp_on_hand=erp_on_hand, pipeline_on_hand=pipeline, status=status)


def check_partition(balances: Mapping[str, int], position_of: Callable[[str], Position | None],
                    others_at_location: Iterable[Position], as_of: datetime) -> list[ReconComparison]:
    """One partition's share of a snapshot: its SKUs, then the location's positions the snapshot lacks.

    `position_of` looks a SKU up at the location; `others_at_location` are the location's positions in
    this partition (those also in the snapshot are skipped here, so each SKU is compared once).
    """
    comparisons = [c for sku, erp in sorted(balances.items()) if (c := compare(sku, erp, position_of(sku), as_of))]
    for position in sorted(others_at_location, key=lambda p: p.sku):
        if position.sku not in balances and (c := compare(position.sku, None, position, as_of)):
            comparisons.append(c)
    return comparisons


def as_of_exact(as_of: datetime, now: datetime, dedupe_retention: int) -> bool:
    """Positions remember movements for DEDUPE_RETENTION: an older as_of cannot be rebuilt exactly."""
    return (now - as_of).total_seconds() < dedupe_retention


def chunked(comparisons: list[ReconComparison], size: int = RESULT_CHUNK) -> list[list[ReconComparison]]:
    """Split one partition's comparisons into result records; an empty check still reports once."""
    return [comparisons[i:i + size] for i in range(0, len(comparisons), size)] or [[]]


# --- Correction mode -------------------------------------------------------------------------------

RECON_SOURCE_PREFIX = "recon:"


def correction_movement_id(snapshot_id: str, sku: str) -> str:
    """Deterministic per (snapshot, SKU): the same drift of the same snapshot is corrected once."""
    return movement_id(SourceSystem.PIPELINE, f"{RECON_SOURCE_PREFIX}{snapshot_id}", sku, Role.RECON)


def _correction(snapshot_id: str, location_id: str, sku: str, difference: int, as_of: datetime) -> Movement:
    return build_movement(
        source=SourceSystem.PIPELINE, source_event_id=f"{RECON_SOURCE_PREFIX}{snapshot_id}", line=sku,
        role=Role.RECON, movement_type=MovementType.ADJUST, sku=sku, location_id=location_id,
        quantity=abs(difference), correlation_id=snapshot_id, occurred_at=as_of,
        reason="RECON_LOSS" if difference > 0 else "RECON_GAIN",
    )


@dataclass(frozen=True)
class CorrectionPolicy:
    """When drift counts as confirmed enough to adjust stock (docs/RECONCILIATION.md, "Corrections")."""

    enabled: bool = False
    settle: float = 5.0               # seconds after as_of before a check may correct (RECON_SETTLE)
    max_snapshot_age: float = 900.0   # seconds between the snapshot reaching Kafka and its check


def correction_for(comparison: ReconComparison, *, snapshot_id: str, location_id: str, as_of: datetime,
                   checked_at: datetime, position: Position | None, exact: bool, backlog: int,
                   snapshot_age: float | None, item_known: bool, policy: CorrectionPolicy) -> Movement | None:
    """An ADJUST that makes the position agree with ERP as of the snapshot, when the drift is confirmed.

    The movement happens at `as_of`, so later movements stay on top of it and its id is fixed per
    (snapshot, SKU): a redelivered check raises the same movement, which the position ignores.
    """
    if not policy.enabled or comparison.status not in (ReconStatus.DRIFT, ReconStatus.MISSING_IN_PIPELINE):
        return None
    if comparison.difference == 0 or not exact or backlog > 0 or not item_known:
        return None
    if (checked_at - as_of).total_seconds() < policy.settle:
        return None  # movements from just before as_of may still be on their way
    if snapshot_age is None or snapshot_age > policy.max_snapshot_age:
        return None  # a replayed or long-queued snapshot: the worker was behind, its positions may be too
    if position is not None and position.last_count_at is not None and position.last_count_at > as_of:
        return None  # a cycle count after the snapshot is the newer truth: ERP's figure is superseded
    return _correction(snapshot_id, location_id, comparison.sku, comparison.difference, as_of)


# --- Summary ---------------------------------------------------------------------------------------

def drift_record(comparison: ReconComparison, result: ReconResult) -> DriftRecord:
    return DriftRecord(
        location_id=result.location_id, sku=comparison.sku, erp_on_hand=comparison.erp_on_hand,
        pipeline_on_hand=comparison.pipeline_on_hand, difference=comparison.difference,
        snapshot_id=result.snapshot_id, as_of=result.as_of, checked_at=result.checked_at,
        kind=comparison.status.value, correction_movement_id=comparison.correction_movement_id,
    )


def new_summary(result: ReconResult, now: datetime) -> ReconciliationSummary:
    return ReconciliationSummary(
        location_id=result.location_id, snapshot_id=result.snapshot_id, as_of=result.as_of,
        compared=0, matched=0, drifted=0, missing_in_pipeline=0, missing_in_erp=0, checked_at=now,
        complete=False, partitions=result.partitions,
    )


@dataclass
class Folded:
    summary: ReconciliationSummary | None
    drifts: list[DriftRecord] = field(default_factory=list)  # drift records to publish
    completed: bool = False     # the snapshot is complete with this result: publish the summary
    ignored: str | None = None  # why the summary did not change: "duplicate" or "superseded"


def _snapshot_order(as_of: datetime, snapshot_id: str) -> tuple[datetime, str]:
    return as_of, snapshot_id


def fold(summary: ReconciliationSummary | None, result: ReconResult, now: datetime,
         source_record: str | None = None) -> Folded:
    """Add one result chunk to the location's summary; counted once per (snapshot, partition, chunk).

    `source_record` names the Kafka record of the result ("partition@offset"). The very record that
    counted a chunk, read again, publishes its drift records (and the summary, once complete) again:
    the worker stopped after the summary was kept, maybe before the broker had them, and SPEC §6
    asks for every drift. The same chunk from another record (the ERP sent its snapshot again) is
    reported once.

    Each SKU of a snapshot is compared in exactly one partition (the one its key hashes to), so
    counting each chunk once counts each (snapshot_id, sku) once. The summary follows the latest
    snapshot of the location (by as_of, then id); results of an older one are ignored.
    """
    if summary is None or _snapshot_order(result.as_of, result.snapshot_id) > _snapshot_order(
            summary.as_of, summary.snapshot_id):
        summary = new_summary(result, now)
    elif summary.snapshot_id != result.snapshot_id:
        return Folded(summary, ignored="superseded")
    part = f"{result.partition}.{result.chunk}"
    drifts = [drift_record(c, result) for c in result.comparisons if c.status is not ReconStatus.MATCHED]
    if part in summary.parts_received:
        if source_record is None or summary.part_records.get(part) != source_record:
            return Folded(summary, ignored="duplicate")
        return Folded(summary, drifts=drifts, completed=summary.complete, ignored="duplicate")

    counts = {status: 0 for status in ReconStatus}
    for comparison in result.comparisons:
        counts[comparison.status] += 1
    kept = sorted([*summary.drifts, *drifts], key=lambda d: (-abs(d.difference), d.sku))
    parts = [*summary.parts_received, part]
    chunks = {**summary.chunks_by_partition, str(result.partition): result.chunks}
    complete = len(chunks) == summary.partitions and len(parts) == sum(chunks.values())
    updated = summary.model_copy(update={
        "compared": summary.compared + len(result.comparisons),
        "matched": summary.matched + counts[ReconStatus.MATCHED],
        "drifted": summary.drifted + counts[ReconStatus.DRIFT],
        "missing_in_pipeline": summary.missing_in_pipeline + counts[ReconStatus.MISSING_IN_PIPELINE],
        "missing_in_erp": summary.missing_in_erp + counts[ReconStatus.MISSING_IN_ERP],
        "net_difference": summary.net_difference + sum(c.difference for c in result.comparisons),
        "corrections": summary.corrections + sum(1 for c in result.comparisons if c.correction_movement_id),
        "movement_backlog": summary.movement_backlog + result.movement_backlog,
        "as_of_exact": summary.as_of_exact and result.as_of_exact,
        "drifts": kept[:MAX_SUMMARY_DRIFTS],
        "drifts_omitted": summary.drifts_omitted + max(0, len(kept) - MAX_SUMMARY_DRIFTS),
        "parts_received": parts,
        "chunks_by_partition": chunks,
        "part_records": {**summary.part_records, part: source_record} if source_record
        else summary.part_records,
        "complete": complete,
        "checked_at": now,
    })
    return Folded(updated, drifts=drifts, completed=complete)


def differing(summary: ReconciliationSummary) -> int:
    """SKUs that did not match, whichever side lacked them."""
    return summary.drifted + summary.missing_in_pipeline + summary.missing_in_erp


# --- Operator's report (`python -m app.cli recon-report`) ------------------------------------------

REPORT_COLUMNS = ("sku", "kind", "erp_on_hand", "pipeline_on_hand", "difference", "correction_movement_id")


@dataclass
class Report:
    location_id: str
    snapshot_id: str | None = None
    as_of: str | None = None
    summary: dict | None = None
    drifts: list[dict] = field(default_factory=list)


def latest_report(location_id: str, records: Iterable[dict]) -> Report:
    """From `inventory.reconciliation` values (in topic order): the latest snapshot of one location."""
    mine = [r for r in records if r.get("location_id") == location_id and r.get("snapshot_id")]
    if not mine:
        return Report(location_id)
    latest = max(mine, key=lambda r: (r.get("as_of") or "", r["snapshot_id"]))
    snapshot_id = latest["snapshot_id"]
    report = Report(location_id, snapshot_id, latest.get("as_of"))
    by_sku: dict[str, dict] = {}
    for record in mine:
        if record["snapshot_id"] != snapshot_id:
            continue
        if record.get("kind") == "SUMMARY":
            report.summary = record
        else:
            by_sku[record["sku"]] = record  # a redelivered record replaces its earlier copy
    report.drifts = sorted(by_sku.values(), key=lambda d: (-abs(d.get("difference") or 0), d["sku"]))
    return report


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("location_id", "snapshot_id", "as_of", *REPORT_COLUMNS))
    for drift in report.drifts:
        writer.writerow((report.location_id, report.snapshot_id, report.as_of,
                         *(_cell(drift.get(c)) for c in REPORT_COLUMNS)))
    return out.getvalue()


def render_table(report: Report) -> str:
    if report.snapshot_id is None:
        return f"no reconciliation for location {report.location_id} on the topic yet\n"
    lines = [f"location {report.location_id}  snapshot {report.snapshot_id}  as of {report.as_of}"]
    s = report.summary
    if s is None:
        lines.append("summary: not complete yet (drift records so far below)")
    else:
        lines.append(f"compared {s['compared']}  matched {s['matched']}  drifted {s['drifted']}  "
                     f"missing in pipeline {s['missing_in_pipeline']}  missing in ERP {s['missing_in_erp']}  "
                     f"corrections {s.get('corrections', 0)}  checked at {s['checked_at']}")
        if s.get("movement_backlog"):
            lines.append(f"warning: owners were {s['movement_backlog']} movements behind when they checked")
        if s.get("as_of_exact") is False:
            lines.append("warning: as_of is older than DEDUPE_RETENTION; pipeline figures are not as of it")
    if not report.drifts:
        lines.append("no differences")
        return "\n".join(lines) + "\n"
    rows = [tuple(_cell(d.get(c)) for c in REPORT_COLUMNS) for d in report.drifts]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(REPORT_COLUMNS)]
    numeric = {"erp_on_hand", "pipeline_on_hand", "difference"}

    def line(cells: Iterable[str]) -> str:
        return "  ".join(c.rjust(w) if name in numeric else c.ljust(w)
                         for c, w, name in zip(cells, widths, REPORT_COLUMNS)).rstrip()

    lines += ["", line(REPORT_COLUMNS), line("-" * w for w in widths), *(line(r) for r in rows)]
    return "\n".join(lines) + "\n"
