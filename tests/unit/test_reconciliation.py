"""Reconciliation rules (SPEC §6, docs/RECONCILIATION.md): comparing as of, summaries, corrections, report."""
from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from app.domain.accounts import Charts
from app.domain.positions import PositionContext, apply, new_position
from app.domain.postings import postings_for
from app.domain.reconciliation import (
    MAX_SUMMARY_DRIFTS, CorrectionPolicy, as_of_exact, check_partition, chunked, compare, correction_for,
    correction_movement_id, fold, latest_report, parse_snapshot, render_csv, render_table,
)
from app.models.canonical import MovementType, Position, Role, SourceSystem
from app.models.records import ErrorCode, PostingKind, ReconComparison, ReconResult, ReconStatus, Rejection
from tests.factories import make_location, make_movement

T0 = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
AS_OF = T0 + timedelta(hours=2)
RETENTION = 7 * 86_400
ON = CorrectionPolicy(enabled=True, settle=5, max_snapshot_age=900)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ctx(now: datetime) -> PositionContext:
    return PositionContext(now_epoch=int(now.timestamp()), dedupe_retention=RETENTION,
                           standard_cost=Decimal("7.00"), legal_entity="US01")


def position(*moves: tuple[str, int, datetime], arrived: datetime | None = None, sku: str = "SKU-1",
             start: Position | None = None) -> Position:
    """A position built by the real position rules from (type, quantity, occurred_at) movements."""
    p = start or new_position(sku, "S1")
    for n, (kind, quantity, occurred) in enumerate(moves, start=len(p.applied) + 1):
        extra = {"reason": "SHRINK"} if kind == "ADJUST" else {}
        m = make_movement(movement_type=MovementType(kind), sku=sku, location_id="S1", quantity=quantity,
                          source_system=SourceSystem.WMS, source_event_id=f"ev-{sku}-{n}",
                          occurred_at=occurred, unit_cost=Decimal("7.00"), **extra)
        p = apply(p, m, ctx(arrived or occurred)).position
    return p


# --- Comparing one SKU as of the snapshot --------------------------------------------------------

def test_equal_on_hand_matches():
    c = compare("SKU-1", 10, position(("RECEIPT", 10, at(0))), AS_OF)
    assert c.status is ReconStatus.MATCHED and c.difference == 0


def test_drift_difference_is_pipeline_minus_erp():
    c = compare("SKU-1", 8, position(("RECEIPT", 10, at(0))), AS_OF)
    assert (c.status, c.erp_on_hand, c.pipeline_on_hand, c.difference) == (ReconStatus.DRIFT, 8, 10, 2)


def test_erp_units_without_a_position_are_missing_in_pipeline():
    c = compare("SKU-9", 7, None, AS_OF)
    assert (c.status, c.pipeline_on_hand, c.difference) == (ReconStatus.MISSING_IN_PIPELINE, None, -7)


def test_erp_zero_without_a_position_matches():
    assert compare("SKU-9", 0, None, AS_OF).status is ReconStatus.MATCHED


def test_pipeline_units_the_snapshot_lacks_are_missing_in_erp():
    c = compare("SKU-1", None, position(("RECEIPT", 6, at(0))), AS_OF)
    assert (c.status, c.erp_on_hand, c.difference) == (ReconStatus.MISSING_IN_ERP, None, 6)


def test_empty_position_the_snapshot_lacks_says_nothing():
    p = position(("RECEIPT", 4, at(0)), ("SALE", 4, at(10)))
    assert compare("SKU-1", None, p, AS_OF) is None


def test_movements_after_as_of_are_taken_back():
    # Received before the snapshot, sold after it (and applied before the check): ERP's 10 still matches.
    p = position(("RECEIPT", 10, at(0)), ("SALE", 3, AS_OF + timedelta(minutes=5)))
    assert p.on_hand == 7
    c = compare("SKU-1", 10, p, AS_OF)
    assert c.status is ReconStatus.MATCHED and c.pipeline_on_hand == 10


def test_movement_at_exactly_as_of_is_part_of_the_snapshot():
    p = position(("RECEIPT", 10, at(0)), ("SALE", 3, AS_OF))
    assert compare("SKU-1", 7, p, AS_OF).status is ReconStatus.MATCHED


def test_position_opened_after_as_of_held_nothing_then():
    p = position(("RECEIPT", 5, AS_OF + timedelta(seconds=1)))
    assert compare("SKU-1", None, p, AS_OF) is None
    c = compare("SKU-1", 0, p, AS_OF)
    assert c.status is ReconStatus.MATCHED and c.pipeline_on_hand == 0


def test_count_after_as_of_is_taken_back_by_its_recorded_difference():
    p = position(("RECEIPT", 10, at(0)), ("COUNT", 6, AS_OF + timedelta(minutes=1)))
    assert p.on_hand == 6
    assert compare("SKU-1", 10, p, AS_OF).status is ReconStatus.MATCHED


def test_late_movement_before_as_of_arriving_after_the_check_is_a_documented_limit():
    # The sale happened before as_of but reaches the pipeline after the check: the check sees drift,
    # a re-check after it arrived matches. (Docs: "Limits", late events; RECON_SETTLE narrows it.)
    before = position(("RECEIPT", 10, at(0)))
    assert compare("SKU-1", 8, before, AS_OF).difference == 2
    after = position(("SALE", 2, AS_OF - timedelta(minutes=1)), start=before, arrived=AS_OF + timedelta(hours=1))
    assert compare("SKU-1", 8, after, AS_OF).status is ReconStatus.MATCHED


def test_as_of_older_than_dedupe_retention_is_not_exact():
    now = AS_OF + timedelta(seconds=RETENTION + 1)
    assert not as_of_exact(AS_OF, now, RETENTION)
    assert as_of_exact(AS_OF, AS_OF + timedelta(hours=1), RETENTION)


# --- One partition's check -----------------------------------------------------------------------

def test_partition_check_compares_snapshot_skus_then_positions_the_snapshot_lacks():
    held = {"A": position(("RECEIPT", 10, at(0)), sku="A"), "B": position(("RECEIPT", 4, at(0)), sku="B"),
            "C": position(("RECEIPT", 6, at(0)), sku="C")}
    comparisons = check_partition({"B": 4, "A": 8, "D": 7}, held.get, held.values(), AS_OF)
    assert [(c.sku, c.status) for c in comparisons] == [
        ("A", ReconStatus.DRIFT), ("B", ReconStatus.MATCHED), ("D", ReconStatus.MISSING_IN_PIPELINE),
        ("C", ReconStatus.MISSING_IN_ERP)]


def test_result_chunks_cover_every_comparison_and_an_empty_check_reports_once():
    items = [ReconComparison(sku=f"S{i}", erp_on_hand=1, pipeline_on_hand=1, status=ReconStatus.MATCHED)
             for i in range(5)]
    assert [len(c) for c in chunked(items, 2)] == [2, 2, 1]
    assert chunked([], 2) == [[]]


# --- Summary: idempotent, complete when every partition reported ----------------------------------

def result(partition: int, *comparisons: tuple[str, int | None, int | None, ReconStatus], snapshot: str = "SNAP-1",
           as_of: datetime = AS_OF, partitions: int = 2, chunk: int = 0, chunks: int = 1) -> ReconResult:
    return ReconResult(
        snapshot_id=snapshot, location_id="S1", as_of=as_of, partition=partition, partitions=partitions,
        chunk=chunk, chunks=chunks, checked_at=AS_OF + timedelta(minutes=1),
        comparisons=[ReconComparison(sku=s, erp_on_hand=e, pipeline_on_hand=p, status=st)
                     for s, e, p, st in comparisons])


NOW = AS_OF + timedelta(minutes=2)
P0 = result(0, ("A", 8, 10, ReconStatus.DRIFT), ("B", 4, 4, ReconStatus.MATCHED))
P1 = result(1, ("D", 7, None, ReconStatus.MISSING_IN_PIPELINE), ("C", None, 6, ReconStatus.MISSING_IN_ERP))


def test_summary_counts_each_kind_and_completes_when_every_partition_reported():
    first = fold(None, P0, NOW)
    assert not first.completed and not first.summary.complete
    assert [d.sku for d in first.drifts] == ["A"]
    done = fold(first.summary, P1, NOW)
    s = done.summary
    assert done.completed and s.complete
    assert (s.compared, s.matched, s.drifted, s.missing_in_pipeline, s.missing_in_erp) == (4, 1, 1, 1, 1)
    assert s.net_difference == 2 - 7 + 6
    assert {(d.sku, d.kind, d.difference) for d in done.drifts} == {("D", "MISSING_IN_PIPELINE", -7),
                                                                      ("C", "MISSING_IN_ERP", 6)}


def test_redelivered_result_is_not_counted_twice_and_reported_again_only_from_the_record_that_counted_it():
    first = fold(None, P0, NOW, "3@10")
    once = first.summary
    # The same record read again (a crash after the summary was kept): counted once, its drifts go again.
    again = fold(once, P0, NOW, "3@10")
    assert again.ignored == "duplicate" and again.summary == once and not again.completed
    assert again.drifts == first.drifts and again.drifts
    # The same chunk in another record (the ERP sent the snapshot again): nothing counted or reported.
    resent = fold(once, P0, NOW, "3@11")
    assert resent.ignored == "duplicate" and resent.drifts == [] and resent.summary == once
    done = fold(once, P1, NOW, "5@2")
    redone = fold(done.summary, P1, NOW, "5@2")
    assert redone.ignored == "duplicate" and redone.summary == done.summary and redone.completed
    assert redone.drifts == done.drifts
    resent = fold(done.summary, P1, NOW, "5@9")
    assert resent.drifts == [] and not resent.completed
    assert done.summary.compared == 4


def test_a_partition_in_chunks_completes_only_with_its_last_chunk():
    s = fold(None, result(0, partitions=1, chunk=0, chunks=2), NOW)
    assert not s.completed
    done = fold(s.summary, result(0, ("A", 1, 1, ReconStatus.MATCHED), partitions=1, chunk=1, chunks=2), NOW)
    assert done.completed and done.summary.compared == 1


def test_newer_snapshot_replaces_the_summary_and_older_results_are_ignored():
    old = fold(None, P0, NOW).summary
    newer = fold(old, result(0, snapshot="SNAP-2", as_of=AS_OF + timedelta(days=1)), NOW).summary
    assert newer.snapshot_id == "SNAP-2" and newer.compared == 0
    assert fold(newer, P1, NOW).ignored == "superseded"


def test_summary_keeps_the_largest_drifts_and_counts_the_rest():
    many = result(0, *((f"S{i:03}", 0, i + 1, ReconStatus.DRIFT) for i in range(MAX_SUMMARY_DRIFTS + 5)),
                  partitions=1)
    s = fold(None, many, NOW).summary
    assert len(s.drifts) == MAX_SUMMARY_DRIFTS and s.drifts_omitted == 5
    assert s.drifts[0].difference == MAX_SUMMARY_DRIFTS + 5 and s.drifted == MAX_SUMMARY_DRIFTS + 5


def test_summary_round_trips_as_table_json():
    s = fold(None, P0, NOW).summary
    assert type(s).model_validate_json(s.model_dump_json()) == s


# --- Correction mode -----------------------------------------------------------------------------

def correct(comparison: ReconComparison, p: Position | None, *, policy: CorrectionPolicy = ON, exact: bool = True,
            backlog: int = 0, age: float | None = 3.0, item_known: bool = True,
            checked_at: datetime = AS_OF + timedelta(minutes=1)):
    return correction_for(comparison, snapshot_id="SNAP-1", location_id="S1", as_of=AS_OF, checked_at=checked_at,
                          position=p, exact=exact, backlog=backlog, snapshot_age=age, item_known=item_known,
                          policy=policy)


def test_surplus_in_pipeline_becomes_recon_loss_at_as_of_with_a_deterministic_id():
    p = position(("RECEIPT", 10, at(0)))
    m = correct(compare("SKU-1", 7, p, AS_OF), p)
    assert (m.movement_type, m.reason, m.quantity, m.occurred_at, m.role) == (
        MovementType.ADJUST, "RECON_LOSS", 3, AS_OF, Role.RECON)
    assert m.movement_id == correction_movement_id("SNAP-1", "SKU-1") == "pipeline:recon:SNAP-1:SKU-1:recon"
    assert correct(compare("SKU-1", 7, p, AS_OF), p) == m


def test_units_missing_in_pipeline_become_recon_gain():
    m = correct(compare("SKU-1", 4, None, AS_OF), None)
    assert (m.reason, m.quantity, m.location_id) == ("RECON_GAIN", 4, "S1")


def test_correction_brings_the_position_to_erp_as_of_and_keeps_later_movements():
    p = position(("RECEIPT", 10, at(0)), ("SALE", 1, AS_OF + timedelta(minutes=5)))
    m = correct(compare("SKU-1", 7, p, AS_OF), p)
    fixed = apply(p, m, ctx(AS_OF + timedelta(minutes=10))).position
    assert fixed.on_hand == 6  # 7 as of the snapshot, then the later sale of 1
    assert compare("SKU-1", 7, fixed, AS_OF).status is ReconStatus.MATCHED
    assert apply(fixed, m, ctx(AS_OF + timedelta(minutes=11))).duplicate  # a redelivered check changes nothing


def test_correction_posts_a_shrink_entry():
    p = position(("RECEIPT", 10, at(0)))
    m = correct(compare("SKU-1", 7, p, AS_OF), p)
    applied = apply(p, m, ctx(AS_OF + timedelta(minutes=10))).applied
    result = postings_for(applied, make_location(location_id="S1"), Charts(), AS_OF)
    [posting] = result.postings
    assert posting.kind is PostingKind.SHRINK
    assert [(ln.account, str(ln.debit), str(ln.credit)) for ln in posting.lines] == [
        ("5100", "21.00", "0.00"), ("1200", "0.00", "21.00")]


@pytest.mark.parametrize("why", ["disabled", "matched", "missing_in_erp", "not_settled", "backlog", "not_exact",
                                 "stale", "no_age", "unknown_item", "count_after"])
def test_unconfirmed_drift_is_reported_but_not_corrected(why):
    p = position(("RECEIPT", 10, at(0)))
    comparison = compare("SKU-1", 7, p, AS_OF)
    kwargs: dict = {}
    if why == "disabled":
        kwargs["policy"] = CorrectionPolicy(enabled=False)
    elif why == "matched":
        comparison = compare("SKU-1", 10, p, AS_OF)
    elif why == "missing_in_erp":
        comparison = compare("SKU-1", None, p, AS_OF)  # absence from a snapshot is not a count of zero
    elif why == "not_settled":
        kwargs["checked_at"] = AS_OF + timedelta(seconds=2)  # within RECON_SETTLE of as_of
    elif why == "backlog":
        kwargs["backlog"] = 12
    elif why == "not_exact":
        kwargs["exact"] = False
    elif why == "stale":
        kwargs["age"] = 901.0  # the snapshot waited in Kafka: replay or a worker that was down
    elif why == "no_age":
        kwargs["age"] = None
    elif why == "unknown_item":
        kwargs["item_known"] = False
    elif why == "count_after":
        p = position(("COUNT", 9, AS_OF + timedelta(minutes=1)), start=p)
        comparison = compare("SKU-1", 7, p, AS_OF)
        assert comparison.status is ReconStatus.DRIFT
    assert correct(comparison, p, **kwargs) is None


# --- The snapshot at the edge --------------------------------------------------------------------

def snapshot(**overrides) -> bytes:
    body = {"snapshot_id": "SNAP-1", "location_id": "S1", "as_of": "2026-11-27T10:00:00Z",
            "balances": [{"sku": "A", "on_hand": 3}]}
    body.update(overrides)
    return orjson.dumps(body)


def test_snapshot_parses():
    s = parse_snapshot(snapshot())
    assert (s.snapshot_id, s.as_of, s.balances[0].on_hand) == ("SNAP-1", AS_OF, 3)


def test_snapshot_time_without_zone_is_utc():
    assert parse_snapshot(snapshot(as_of="2026-11-27T10:00:00")).as_of == AS_OF


@pytest.mark.parametrize(("raw", "code"), [
    (b"{not json", ErrorCode.MALFORMED_JSON),
    (snapshot(balances=[{"sku": "A"}]), ErrorCode.SCHEMA_INVALID),
    (snapshot(location_id=""), ErrorCode.SCHEMA_INVALID),
    (snapshot(balances=[{"sku": "A", "on_hand": 1}, {"sku": "A", "on_hand": 2}]), ErrorCode.SCHEMA_INVALID),
])
def test_bad_snapshot_is_a_rejection_with_a_code(raw, code):
    rejection = parse_snapshot(raw)
    assert isinstance(rejection, Rejection) and rejection.error_code is code


# --- Operator's report ---------------------------------------------------------------------------

def _records():
    s1 = fold(None, result(0, ("A", 8, 10, ReconStatus.DRIFT), partitions=1), NOW)
    s2 = fold(None, result(0, ("A", 8, 8, ReconStatus.MATCHED), ("Z", 5, None, ReconStatus.MISSING_IN_PIPELINE),
                           snapshot="SNAP-2", as_of=AS_OF + timedelta(days=1), partitions=1), NOW)
    out = []
    for f in (s1, s2):
        out += [orjson.loads(d.model_dump_json()) for d in f.drifts]
        out.append(orjson.loads(f.summary.model_dump_json()))
    out.append(orjson.loads(s2.drifts[0].model_dump_json()))  # a redelivered drift record
    return out


def test_report_shows_the_latest_snapshot_once_per_sku():
    report = latest_report("S1", _records())
    assert report.snapshot_id == "SNAP-2" and report.summary["missing_in_pipeline"] == 1
    assert [d["sku"] for d in report.drifts] == ["Z"]
    table = render_table(report)
    assert "snapshot SNAP-2" in table and "MISSING_IN_PIPELINE" in table and "compared 2" in table


def test_report_csv_has_a_header_and_one_row_per_sku():
    rows = list(csv.DictReader(io.StringIO(render_csv(latest_report("S1", _records())))))
    assert rows == [{"location_id": "S1", "snapshot_id": "SNAP-2", "as_of": rows[0]["as_of"], "sku": "Z",
                     "kind": "MISSING_IN_PIPELINE", "erp_on_hand": "5", "pipeline_on_hand": "",
                     "difference": "-5", "correction_movement_id": ""}]


def test_report_for_an_unknown_location_says_so():
    assert "no reconciliation" in render_table(latest_report("NOPE", _records()))


# --- Routing checks to the owner of the positions (agents/reconciliation.py) -----------------------

def test_check_partition_is_the_partition_the_app_sends_the_skus_movements_to():
    from aiokafka.partitioner import DefaultPartitioner

    from app.partitions import sku_partition
    for n in range(500):
        sku = f"SKU-{n}"
        # inventory.movements is partitioned by SKU (app/domain/keys.py), whatever the location.
        assert sku_partition(sku, 8) == DefaultPartitioner()(sku.encode(), list(range(8)), list(range(8)))


def test_snapshot_fans_out_one_check_per_partition_with_its_own_skus():
    from agents.reconciliation import checks_for
    from app.partitions import key_partition
    snap = parse_snapshot(snapshot(balances=[{"sku": f"SKU-{n}", "on_hand": n} for n in range(40)]))
    checks = checks_for(snap, 8, None)
    assert [c.partition for c in checks] == list(range(8))
    assert sum(len(c.balances) for c in checks) == 40
    assert all(key_partition("inventory.movements", f"{sku}@S1".encode(), 8) == c.partition
               for c in checks for sku in c.balances)


def test_recon_settings_come_from_the_environment_and_bad_values_are_named():
    from agents.reconciliation import ReconConfig
    from app.settings import SettingsError
    config = ReconConfig.from_env({"RECON_CORRECTIONS": "true", "RECON_SETTLE": "2", "RECON_MAX_SNAPSHOT_AGE": "60"})
    assert config.policy == CorrectionPolicy(enabled=True, settle=2.0, max_snapshot_age=60.0)
    assert not ReconConfig.from_env({}).policy.enabled
    with pytest.raises(SettingsError, match="RECON_CORRECTIONS"):
        ReconConfig.from_env({"RECON_CORRECTIONS": "maybe"})
    with pytest.raises(SettingsError, match="RECON_SETTLE"):
        ReconConfig.from_env({"RECON_SETTLE": "-1"})
