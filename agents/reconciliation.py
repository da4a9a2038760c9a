"""Reconciliation stage: ERP snapshots → checks at the positions' owners → drift records and summaries.

    erp.stock_snapshots (key LOCATION)
      └─ fan_out_snapshots: one ReconCheck per partition, sent to that partition number
    internal.reconciliation-checks (partition p = the partition of the SKUs' inventory.movements)
      └─ check_positions: reads `positions` (co-partitioned with inventory.movements), compares as of,
         lists the location's positions the snapshot lacks, optionally raises ADJUST corrections
    internal.reconciliation-results (key LOCATION)
      └─ summarise: folds results into `reconciliation-summaries`, emits drift records and one
         summary per snapshot to inventory.reconciliation (key LOCATION)

Why it is built this way, and what "as of" can and cannot promise: docs/RECONCILIATION.md.
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from faust.types import TP

from agents.outputs import dead_letter, publish, trace, utcnow
from agents.streams import each_event, source_record
from app import metrics
from app import topics as t
from app.domain.keys import position_key, split_position_key
from app.partitions import sku_partition
from app.domain.reconciliation import (
    CorrectionPolicy, as_of_exact, check_partition, chunked, correction_for, differing, fold, parse_snapshot,
)
from app.faust_app import (
    app, audit_topic, erp_snapshots_topic, movements_topic, recon_checks_topic, recon_results_topic,
    reconciliation_topic, settings,
)
from app.models.canonical import Movement, Position
from app.models.raw import StockSnapshot
from app.models.records import (
    AuditEntry, ErrorCode, ReconCheck, ReconComparison, ReconResult, Rejection, TraceStage,
)
from app.settings import SettingsError
from app.audit import record as record_audit
from tables.definitions import positions
from tables.master import master_data
from tables.reconciliation_summaries import summaries

log = logging.getLogger(__name__)

ACTOR = "reconciliation"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class ReconConfig:
    """RECON_* variables (documented in docs/RECONCILIATION.md)."""

    policy: CorrectionPolicy = CorrectionPolicy()

    @property
    def settle(self) -> float:
        return self.policy.settle

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ReconConfig:
        env = dict(os.environ if env is None else env)
        raw = env.get("RECON_CORRECTIONS", "false").strip().lower()
        if raw not in _TRUE | _FALSE:
            raise SettingsError(f"RECON_CORRECTIONS must be true or false, got {raw!r}")
        return cls(policy=CorrectionPolicy(enabled=raw in _TRUE, settle=_seconds(env, "RECON_SETTLE", 5.0),
                                           max_snapshot_age=_seconds(env, "RECON_MAX_SNAPSHOT_AGE", 900.0)))


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name) or ""
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be >= 0, got {value}")
    return value


config = ReconConfig.from_env()


# --- 1. snapshot → one check per partition ---------------------------------------------------------

@app.agent(erp_snapshots_topic)
async def fan_out_snapshots(stream):
    await each_event(stream, "reconciliation", fan_out_snapshot)


async def fan_out_snapshot(event) -> None:
    raw = event.value or b""
    snapshot = parse_snapshot(raw)
    if isinstance(snapshot, Rejection):
        await dead_letter(event.message, t.ERP_SNAPSHOTS, raw, snapshot, source_system="erp",
                          source_event_id=snapshot.source_event_id, stage="reconciliation")
        return
    if master_data.location(snapshot.location_id) is None:
        await dead_letter(event.message, t.ERP_SNAPSHOTS, raw, Rejection(
            error_code=ErrorCode.UNKNOWN_LOCATION, source_event_id=snapshot.snapshot_id,
            error_detail=f"location {snapshot.location_id!r} is not in the location master"),
            source_system="erp", source_event_id=snapshot.snapshot_id)
        return
    await _settle(snapshot)
    received = datetime.fromtimestamp(event.message.timestamp, UTC) if event.message.timestamp else None
    for check in checks_for(snapshot, settings.topic_partitions, received):
        # An explicit partition, not a key: the check must reach the owner of these positions.
        await recon_checks_topic.send(key=position_key("*", snapshot.location_id).encode(),
                                      value=check.to_json(), partition=check.partition)


def checks_for(snapshot: StockSnapshot, partitions: int, received: datetime | None) -> list[ReconCheck]:
    """Every partition gets a check, even with no SKU of the snapshot: it still lists its positions."""
    balances: list[dict[str, int]] = [{} for _ in range(partitions)]
    for balance in snapshot.balances:
        # A check sent to partition p is read by the worker whose inventory.movements p holds the SKU.
        balances[sku_partition(balance.sku, partitions)][balance.sku] = balance.on_hand
    return [ReconCheck(snapshot_id=snapshot.snapshot_id, location_id=snapshot.location_id, as_of=snapshot.as_of,
                       partition=p, partitions=partitions, balances=balances[p], snapshot_received_at=received)
            for p in range(partitions)]


async def _settle(snapshot: StockSnapshot) -> None:
    """Movements that happened just before as_of may still be on their way: wait RECON_SETTLE past it."""
    wait = (snapshot.as_of + timedelta(seconds=config.settle) - utcnow()).total_seconds()
    if wait > 0:
        await asyncio.sleep(min(wait, config.settle))


# --- 2. check at the owner of the positions --------------------------------------------------------

@app.agent(recon_checks_topic)
async def check_positions(stream):
    await each_event(stream, "reconciliation", check_partition_positions)


async def check_partition_positions(event) -> None:
    check = ReconCheck.model_validate_json(event.value)
    partition = event.message.partition
    if not _owns_movements(partition, check):
        return
    now = utcnow()
    location = check.location_id
    backlog = await _movement_backlog(partition)
    exact = as_of_exact(check.as_of, now, settings.dedupe_retention)
    found: dict[str, Position | None] = {}

    def position_of(sku: str) -> Position | None:
        # Inside this event, the table reads partition `partition`: where this key's position lives.
        found[sku] = positions.get(position_key(sku, location))
        return found[sku]

    others = _positions_at(location, partition, check.partitions, skip=check.balances)
    comparisons = check_partition(check.balances, position_of, others, check.as_of)
    found.update({p.sku: p for p in others})
    if config.policy.enabled:
        comparisons = [await _maybe_correct(c, check, found.get(c.sku), exact, backlog, now)
                       for c in comparisons]
    parts = chunked(comparisons)
    for n, part in enumerate(parts):
        await publish(recon_results_topic, location, ReconResult(
            snapshot_id=check.snapshot_id, location_id=location, as_of=check.as_of, partition=partition,
            partitions=check.partitions, chunk=n, chunks=len(parts), comparisons=part, checked_at=now,
            movement_backlog=backlog, as_of_exact=exact))


@app.on_partitions_assigned.connect
async def assert_copartitioned(sender, assigned, **kwargs) -> None:
    """At every assignment: each check partition a worker gets must come with its movements partition."""
    checks = {tp.partition for tp in assigned if tp.topic == t.RECON_CHECKS}
    movements = {tp.partition for tp in assigned if tp.topic == t.MOVEMENTS}
    if checks - movements:
        log.error("%s partitions %s are assigned without %s: reconciliation checks there will be skipped. "
                  "Are the topics created with the same partition count, and every worker running the same "
                  "stages?", t.RECON_CHECKS, sorted(checks - movements), t.MOVEMENTS)


def _owns_movements(partition: int, check: ReconCheck) -> bool:
    """The invariant the design rests on (Faust's co-partitioned assignment of topics with equal
    partition counts): the worker reading check partition p also owns inventory.movements p."""
    movements_tp = TP(t.MOVEMENTS, partition)
    if partition == check.partition and movements_tp in app.consumer.assignment():
        return True
    log.error("reconciliation check %s of %s arrived on partition %d (meant for %d) of a worker that does not "
              "own %s: topics not co-partitioned? The check is skipped; the summary stays incomplete.",
              check.snapshot_id, check.location_id, partition, check.partition, movements_tp)
    return False


def _positions_at(location_id: str, partition: int, partitions: int, skip: dict[str, int]) -> list[Position]:
    """The location's positions held in `partition` (the table iterates every local partition)."""
    suffix = position_key("", location_id).encode()
    found = []
    for key, raw in positions.table.items():
        if not key.endswith(suffix):
            continue
        sku = split_position_key(key.decode())[0]
        if sku_partition(sku, partitions) != partition or sku in skip:
            continue
        found.append(Position.model_validate_json(raw))
    return found


async def _movement_backlog(partition: int) -> int:
    """inventory.movements records of this partition not yet fetched by this worker (0 if unknown)."""
    tp = TP(t.MOVEMENTS, partition)
    try:
        highwater = app.consumer.highwater(tp)
        position = await app.consumer.position(tp)
    except Exception:  # noqa: BLE001 - a metric of caution, never a reason to fail a check
        return 0
    if highwater is None or position is None:
        return 0
    return max(0, highwater - position)


async def _maybe_correct(comparison: ReconComparison, check: ReconCheck, position: Position | None, exact: bool,
                         backlog: int, now: datetime) -> ReconComparison:
    age = (now - check.snapshot_received_at).total_seconds() if check.snapshot_received_at else None
    movement = correction_for(
        comparison, snapshot_id=check.snapshot_id, location_id=check.location_id, as_of=check.as_of,
        checked_at=now, position=position, exact=exact, backlog=backlog, snapshot_age=age,
        item_known=master_data.item(comparison.sku) is not None, policy=config.policy)
    if movement is None:
        return comparison
    await _send_correction(movement, comparison, check)
    return comparison.model_copy(update={"correction_movement_id": movement.movement_id})


async def _send_correction(movement: Movement, comparison: ReconComparison, check: ReconCheck) -> None:
    key = position_key(movement.sku, movement.location_id)
    await publish(movements_topic, key, movement.model_copy(update={"received_at": utcnow()}))
    await trace(movement.source_system.value, movement.source_event_id, TraceStage.MOVEMENT,
                movement_id=movement.movement_id, movement_type=movement.movement_type.value, key=key,
                quantity=movement.quantity, reason=movement.reason)
    await audit("recon_correction", movement_id=movement.movement_id, snapshot_id=check.snapshot_id,
                location_id=check.location_id, sku=comparison.sku, as_of=check.as_of.isoformat(),
                status=comparison.status.value, erp_on_hand=comparison.erp_on_hand,
                pipeline_on_hand=comparison.pipeline_on_hand, reason=movement.reason, quantity=movement.quantity)


async def audit(action: str, **detail: object) -> None:
    """The audit trail's one mechanism (app/audit.py): AUDIT_LOG JSON lines and ops.audit, key the actor."""
    await record_audit(AuditEntry(actor=ACTOR, action=action, at=utcnow(), detail=detail),
                       settings.audit_log, audit_topic)


# --- 3. results → summary per location -------------------------------------------------------------

@app.agent(recon_results_topic)
async def summarise(stream):
    await each_event(stream, "reconciliation", summarise_result)


async def summarise_result(event) -> None:
    result = ReconResult.model_validate_json(event.value)
    location = result.location_id
    folded = fold(summaries.get(location), result, utcnow(), source_record(event.message))
    if folded.ignored == "superseded":
        return
    summary, counted = folded.summary, folded.ignored is None
    if counted:
        summaries.set(location, summary)
    for drift in folded.drifts:
        if counted:
            metrics.DRIFT.labels(kind=drift.kind).inc()
        await publish(reconciliation_topic, location, drift)
    if folded.completed:
        metrics.DRIFT_LAST.labels(location=location).set(differing(summary))
        # The bookkeeping of parts is the table's business, not the published record's.
        await publish(reconciliation_topic, location,
                      summary.model_copy(update={"parts_received": [], "chunks_by_partition": {},
                                                 "part_records": {}}))
