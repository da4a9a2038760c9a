"""Key-by-key comparison of what the pipeline emitted with what the oracle expects, and the figures."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from app.domain.day_batches import posting_digest_of
from tests.chaos.kafka_tools import BUCKETS, OutRecord
from tests.chaos.oracle import MovementRef, OracleResult, RawInput

__all__ = ["BUCKETS", "Verdict", "compare"]
RAW_TOPICS = {"pos.transactions", "ecom.orders", "marketplace.orders", "oms.reservations", "wms.events",
              "returns.inspections"}


@dataclass
class Verdict:
    figures: dict = field(default_factory=dict)
    mismatches: dict[str, list] = field(default_factory=lambda: defaultdict(list))

    @property
    def mismatch_total(self) -> int:
        return sum(len(v) for v in self.mismatches.values())

    def add(self, kind: str, items) -> None:
        """Mismatches found after `compare` (other outputs, the web view, liveness), counted in the
        figures as compare's own are."""
        self.mismatches[kind].extend(items)
        self.figures["mismatches"][kind] = len(self.mismatches[kind])
        self.figures["mismatch_total"] = self.mismatch_total

    def summary(self, limit: int = 8) -> str:
        lines = [f"{self.mismatch_total} mismatches"]
        for kind, items in self.mismatches.items():
            if items:
                lines.append(f"  {kind}: {len(items)}")
                lines.extend(f"    {item}" for item in items[:limit])
        return "\n".join(lines)


def _ref(record: OutRecord) -> MovementRef:
    return MovementRef.of_availability(record.key, record.value["cause"])


def _balanced(posting: dict) -> bool:
    debits = sum((Decimal(line["debit"]) for line in posting["lines"]), Decimal("0"))
    credits = sum((Decimal(line["credit"]) for line in posting["lines"]), Decimal("0"))
    return debits == credits and debits > 0


def _content(record: dict, stamped: str = "created_at") -> tuple:
    """A record's content but for the moment it was stamped (a re-send carries a later one)."""
    return tuple(sorted((k, repr(v)) for k, v in record.items() if k != stamped))


def compare(oracle: OracleResult, raw: list[RawInput], availability: list[OutRecord], postings: list[OutRecord],
            dlq: list[OutRecord]) -> Verdict:
    v = Verdict()
    events_for = oracle.events_by_key

    # --- availability: versions, causes, duplicates ----------------------------------------------
    by_key_version: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
    for record in availability:
        by_key_version[(record.key, record.value["version"])].append(record)
    versions_of: dict[str, set[int]] = defaultdict(set)
    for key, version in by_key_version:
        versions_of[key].add(version)
    versions_of_ref: dict[MovementRef, set[int]] = defaultdict(set)
    ref_of_movement_id: dict[str, MovementRef] = {}
    duplicate_availability = 0
    for (key, version), records in sorted(by_key_version.items()):
        duplicate_availability += len(records) - 1
        causes = {r.value["cause"]["movement_id"] for r in records}
        states = {tuple(r.value[b] for b in BUCKETS) for r in records}
        if len(causes) > 1 or len(states) > 1:
            v.mismatches["availability_version_conflicts"].append(
                {"key": key, "version": version, "causes": sorted(causes), "states": sorted(states)})
        for r in records:
            versions_of_ref[_ref(r)].add(version)
            ref_of_movement_id[r.value["cause"]["movement_id"]] = _ref(r)

    # --- final positions --------------------------------------------------------------------------
    keys = set(oracle.positions) | set(versions_of)
    for key in sorted(keys):
        expected = oracle.positions.get(key)
        seen = versions_of.get(key, set())
        n = expected.version if expected else 0
        latest_version = max(seen) if seen else 0
        latest = by_key_version[(key, latest_version)][-1].value if seen else None
        diffs = {}
        if latest_version != n:
            diffs["version"] = (n, latest_version)
        for bucket in BUCKETS:
            want = getattr(expected, bucket) if expected else 0
            got = latest[bucket] if latest else 0
            if want != got:
                diffs[bucket] = (want, got)
        if diffs:
            v.mismatches["positions"].append({"key": key, "expected_vs_actual": diffs,
                                              "events": events_for.get(key, [])[-12:]})
        missing = sorted(set(range(1, n + 1)) - seen)
        if missing:
            v.mismatches["availability_version_gaps"].append({"key": key, "missing_versions": missing[:20],
                                                              "expected_last": n})
        beyond = sorted(x for x in seen if x > n or x < 1)
        if beyond:
            v.mismatches["availability_versions_beyond_expected"].append({"key": key, "versions": beyond[:20],
                                                                          "expected_last": n})

    # --- movements: none lost, none applied twice ------------------------------------------------
    expected_refs = set(oracle.applied)
    actual_refs = set(versions_of_ref)
    for ref in sorted(expected_refs - actual_refs):
        v.mismatches["movements_lost"].append({"movement": str(ref), "phase": oracle.applied[ref],
                                               "events": events_for.get(ref.key, [])[-12:]})
    for ref in sorted(actual_refs - expected_refs):
        v.mismatches["movements_unexpected"].append({"movement": str(ref), "versions": sorted(versions_of_ref[ref])})
    for ref, versions in sorted(versions_of_ref.items()):
        if len(versions) > 1:
            v.mismatches["movements_applied_twice"].append({"movement": str(ref), "versions": sorted(versions)})

    # --- postings ---------------------------------------------------------------------------------
    ids_by_identity: dict[tuple[str, str], set[str]] = defaultdict(set)
    records_by_id: dict[str, list[dict]] = defaultdict(list)
    actual_kinds: set[tuple[MovementRef, str]] = set()
    for record in postings:
        posting = record.value
        records_by_id[posting["posting_id"]].append(posting)
        ids_by_identity[(posting["movement_id"], posting["kind"])].add(posting["posting_id"])
        ref = ref_of_movement_id.get(posting["movement_id"])
        if ref is None:
            v.mismatches["postings_without_applied_movement"].append(
                {"posting_id": posting["posting_id"], "movement_id": posting["movement_id"], "kind": posting["kind"]})
            continue
        actual_kinds.add((ref, posting["kind"]))
    unbalanced = sorted({pid for pid, recs in records_by_id.items() if not all(_balanced(p) for p in recs)})
    v.mismatches["postings_unbalanced"].extend(unbalanced)
    for pid, recs in records_by_id.items():
        if len({_content(p) for p in recs}) > 1:
            v.mismatches["posting_id_conflicts"].append({"posting_id": pid, "variants": len({_content(p) for p in recs})})
    for identity, ids in ids_by_identity.items():
        if len(ids) > 1:
            v.mismatches["posting_id_unstable"].append({"movement_kind": identity, "ids": sorted(ids)})
    expected_kinds = oracle.expected_postings()
    for ref, kind in sorted(expected_kinds - actual_kinds):
        v.mismatches["postings_missing"].append({"movement": str(ref), "kind": kind,
                                                 "phase": oracle.applied.get(ref)})
    optional = oracle.optional_postings()
    for ref, kind in sorted(actual_kinds - expected_kinds - optional):
        v.mismatches["postings_unexpected"].append({"movement": str(ref), "kind": kind,
                                                    "expected_kinds": sorted(oracle.posting_kinds.get(ref, ()))})

    # --- dead letters -----------------------------------------------------------------------------
    dlq_at: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    unknown_reservations: set[tuple[str, str, str]] = set()
    for record in dlq:
        letter = record.value
        dlq_at[(letter["source_topic"], letter.get("partition"), letter.get("offset"))].append(letter["error_code"])
        if letter["source_topic"] == "inventory.movements" and letter["error_code"] == "UNKNOWN_RESERVATION":
            unknown_reservations.add((letter.get("source_system"), letter.get("source_event_id"),
                                      _movement_key(letter)))
    bad_at = {(r.topic, r.partition, r.offset): r for r in oracle.bad_records}
    for where, record in sorted(bad_at.items()):
        codes = dlq_at.get(where)
        if not codes:
            v.mismatches["dlq_missing"].append({"record": where, "expected_code": record.bad,
                                                "value": record.value[:80]})
        elif record.bad not in codes:
            v.mismatches["dlq_wrong_code"].append({"record": where, "expected_code": record.bad, "codes": codes})
    for where, codes in sorted(dlq_at.items(), key=str):
        if where[0] in RAW_TOPICS and where not in bad_at:
            v.mismatches["dlq_unexpected"].append({"record": where, "codes": codes})
    for ref in sorted(oracle.rejected_releases):
        if (ref.system, ref.event_id, ref.key) not in unknown_reservations:
            v.mismatches["unknown_reservation_not_dead_lettered"].append(str(ref))

    # --- duplicates out, by the phase of the movement that caused them ---------------------------
    availability_dups_by_phase: Counter = Counter()
    for (key, version), records in by_key_version.items():
        if len(records) > 1:
            availability_dups_by_phase[oracle.applied.get(_ref(records[0]), -1)] += len(records) - 1
    postings_dups_by_phase: Counter = Counter()
    for pid, recs in records_by_id.items():
        if len(recs) > 1:
            ref = ref_of_movement_id.get(recs[0]["movement_id"])
            postings_dups_by_phase[oracle.applied.get(ref, -1) if ref else -1] += len(recs) - 1

    # --- figures ----------------------------------------------------------------------------------
    good = [r for r in raw if not r.bad]
    duplicate_postings = sum(len(recs) - 1 for recs in records_by_id.values())
    v.figures = {
        "raw_records_produced": len(raw),
        "raw_records_by_topic": dict(Counter(r.topic for r in raw)),
        "bad_records_produced": len(raw) - len(good),
        "bad_records_by_code": dict(Counter(r.bad for r in raw if r.bad)),
        "producer_resends_in": oracle.duplicates_in,
        "keys_compared": len(keys),
        "movements_expected": len(expected_refs),
        "movements_by_type": dict(Counter(ref.type for ref in expected_refs)),
        "releases_dead_lettered_unknown_reservation": len(oracle.rejected_releases),
        "availability_records_out": len(availability),
        "availability_duplicate_records": duplicate_availability,
        "availability_keys_with_duplicates": len({k for (k, _), recs in by_key_version.items() if len(recs) > 1}),
        "postings_expected": len(expected_kinds),
        "postings_records_out": len(postings),
        "postings_distinct_ids": len(records_by_id),
        "postings_duplicate_records": duplicate_postings,
        "availability_duplicates_by_phase": dict(sorted(availability_dups_by_phase.items())),
        "postings_duplicates_by_phase": dict(sorted(postings_dups_by_phase.items())),
        "dlq_records_out": len(dlq),
        "mismatches": {k: len(items) for k, items in v.mismatches.items()},
    }
    v.figures["mismatch_total"] = v.mismatch_total
    return v


def _movement_key(letter: dict) -> str | None:
    import orjson
    try:
        movement = orjson.loads(letter["raw_value"])
        return f"{movement['sku']}@{movement['location_id']}"
    except Exception:  # a dead letter that is not a movement: not ours to explain here
        return None


# --- day batches (SPEC §5.3) ---------------------------------------------------------------------

def closed_days(raw: list[RawInput]) -> set[tuple[str, str]]:
    """(store, business date) of every POS DAY_CLOSE the workload sent."""
    days = set()
    for record in raw:
        if record.topic == "pos.transactions" and record.bad is None and b'"DAY_CLOSE"' in record.value:
            txn = orjson.loads(record.value)
            if txn.get("type") == "DAY_CLOSE":
                days.add((txn["store_id"], txn["business_date"]))
    return days


def day_batch_mismatches(closed: set[tuple[str, str]], postings: list[OutRecord],
                         batches: list[OutRecord]) -> dict[str, list]:
    """Each closed store day has its day batch, a batch re-sent under its id says the same again
    (but for when it was closed), and a day's batches together cover each of its postings on
    finance.postings exactly once: their counts, digests and per-account totals add up to the
    postings' own. Late postings go out LATE_BATCH_AFTER after the first, so this holds only once
    they have (tests/chaos/runner.py waits for it)."""
    mismatches: dict[str, list] = defaultdict(list)
    by_id: dict[str, dict] = {}
    for record in batches:
        batch = record.value
        first = by_id.setdefault(batch["batch_id"], batch)
        if first is not batch and _content(first, "closed_at") != _content(batch, "closed_at"):
            mismatches["day_batch_conflicts"].append(batch["batch_id"])
    day_of = lambda record: (record["location_id"], record["business_date"])   # noqa: E731
    posted: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for record in postings:
        posted[day_of(record.value)][record.value["posting_id"]] = record.value
    batched: dict[tuple, list[dict]] = defaultdict(list)
    for batch in by_id.values():
        batched[day_of(batch)].append(batch)
    for day in sorted(closed - {day_of(b) for b in by_id.values() if b["sequence"] == 0}):
        mismatches["day_batch_missing"].append(f"{day[0]} {day[1]}")
    for day in sorted(closed & set(batched)):
        ids = set(posted[day])
        listed = [posting_id for batch in batched[day] for posting_id in batch["posting_ids"]]
        digest = ""
        for batch in batched[day]:
            digest = f"{int(digest or '0', 16) ^ int(batch['posting_digest'] or '0', 16):064x}"
        problems = []
        count = sum(batch["posting_count"] for batch in batched[day])
        if count != len(ids):
            problems.append(f"{count} postings in {len(batched[day])} batches, {len(ids)} on finance.postings")
        if digest != posting_digest_of(sorted(ids)):
            problems.append("posting digests differ")
        if len(listed) != len(set(listed)) or not set(listed) <= ids:
            problems.append("a listed posting is twice in the batches or not on finance.postings")
        if _totals(batch["totals"] for batch in batched[day]) != _posting_totals(posted[day].values()):
            problems.append("per-account totals differ")
        if problems:
            mismatches["day_batches_not_covering_postings"].append(f"{day[0]} {day[1]}: {'; '.join(problems)}")
    return mismatches


def _totals(each_batch_totals) -> dict[tuple[str, str], Decimal]:
    summed: Counter = Counter()
    for totals in each_batch_totals:
        for account, sides in totals.items():
            for side, amount in sides.items():
                summed[(account, side)] += Decimal(amount)
    return {key: amount for key, amount in summed.items() if amount}


def _posting_totals(postings) -> dict[tuple[str, str], Decimal]:
    return _totals({line["account"]: {"debit": line["debit"], "credit": line["credit"]}}
                   for posting in postings for line in posting["lines"])


# --- channel availability (SPEC §3) --------------------------------------------------------------

def channel_mismatches(availability: list[OutRecord], channels: list[OutRecord],
                       locations: list[dict]) -> dict[str, list]:
    """The last record of each channel and SKU on channel.availability adds up what the last
    availability records of the SKU's locations that serve the channel say: the final state is
    always published, whatever stopped, crashed or moved on the way."""
    serves = {location["location_id"]: location["channels"] for location in locations}
    expected: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for position in _latest(availability, lambda value: (value["sku"], value["location_id"])).values():
        for channel in serves.get(position["location_id"], ()):
            expected[(channel, position["sku"])][position["location_id"]] = position["available"]
    published = _latest(channels, lambda value: (value["channel"], value["sku"]))
    mismatches: dict[str, list] = defaultdict(list)
    for channel, sku in sorted(set(expected) | set(published)):
        want, got = expected.get((channel, sku), {}), published.get((channel, sku))
        if got is None:
            mismatches["channel_availability_missing"].append(f"{channel}:{sku} (expected {sum(want.values())})")
        elif got["available"] != sum(want.values()) or got["by_location"] != want:
            mismatches["channel_availability_not_final"].append(
                f"{channel}:{sku} version {got['version']}: {got['available']} {got['by_location']}, "
                f"the locations say {sum(want.values())} {want}")
    return mismatches


def channel_forensics(stale: list[str], availability: list[OutRecord], channels: list[OutRecord],
                      network_changelog: list[OutRecord], limit: int = 4) -> dict[str, dict]:
    """For channel totals left stale (`channel_mismatches`' items): the SKU's channel records, its
    locations' availability records and its network's changelog values, each with partition and
    offset, in order."""
    skus = list(dict.fromkeys(item.split(" ", 1)[0].split(":", 1)[1] for item in stale))[:limit]
    return {sku: {
        "channel_records": [
            f"p{r.partition}@{r.offset} {r.value['channel']} v{r.value['version']} "
            f"{r.value['available']} {r.value['by_location']}"
            for r in channels if r.value.get("sku") == sku],
        "availability_records": [
            f"p{r.partition}@{r.offset} {r.value['location_id']} v{r.value['version']} "
            f"available={r.value['available']} cause={r.value.get('cause')}"
            for r in availability if r.value.get("sku") == sku],
        "network_changelog": [
            f"p{r.partition}@{r.offset} {r.value.get('by_location')} "
            f"versions={r.value.get('channel_versions')} pending={r.value.get('pending')}"
            for r in network_changelog if r.key == sku and r.value]} for sku in skus}


def _latest(records: list[OutRecord], key_of) -> dict:
    latest: dict = {}
    for record in records:
        key = key_of(record.value)
        if key not in latest or record.value["version"] > latest[key]["version"]:
            latest[key] = record.value
    return latest
