"""The chaos runs' checks of the outputs beyond the positions and postings (tests/chaos/verify.py),
without a broker: the day batches and the channel availability, what each accepts and what it tells wrong."""
from __future__ import annotations

from app.domain.day_batches import posting_digest_of
from tests.chaos.kafka_tools import OutRecord
from tests.chaos.oracle import RawInput
from tests.chaos.verify import channel_forensics, channel_mismatches, closed_days, day_batch_mismatches

DAY = "2026-12-05"
CLOSED = {("R-S01", DAY)}


def posting(posting_id: str, amount: str, account: str = "4000") -> OutRecord:
    value = {"posting_id": posting_id, "location_id": "R-S01", "business_date": DAY,
             "lines": [{"account": "1100", "debit": amount, "credit": "0.00"},
                       {"account": account, "debit": "0.00", "credit": amount}]}
    return OutRecord("finance.postings", 0, 0, posting_id, value, b"")


def batch(sequence: int, ids: list[str], totals: dict, closed_at: str = "2026-12-05T23:00:00Z") -> OutRecord:
    value = {"batch_id": f"US01:R-S01:{DAY}#{sequence}", "location_id": "R-S01", "business_date": DAY,
             "sequence": sequence, "late": sequence > 0, "posting_ids": ids, "posting_count": len(ids),
             "posting_digest": posting_digest_of(ids), "totals": totals, "closed_at": closed_at}
    return OutRecord("finance.journal_batches", 0, 0, value["batch_id"], value, b"")


def sides(debit: str, credit: str) -> dict:
    return {"debit": debit, "credit": credit}


POSTINGS = [posting("P1", "10.00"), posting("P2", "5.50"), posting("P1", "10.00")]   # P1 sent twice
DAY_BATCH = batch(0, ["P1"], {"1100": sides("10.00", "0.00"), "4000": sides("0.00", "10.00")})
LATE_BATCH = batch(1, ["P2"], {"1100": sides("5.50", "0.00"), "4000": sides("0.00", "5.50")})


def test_a_day_batch_and_a_late_one_that_cover_each_posting_once_are_right_whatever_was_sent_twice():
    resent = batch(0, ["P1"], DAY_BATCH.value["totals"], closed_at="2026-12-05T23:05:00Z")   # after a crash
    assert day_batch_mismatches(CLOSED, POSTINGS, [DAY_BATCH, LATE_BATCH, resent]) == {}


def test_a_closed_day_without_its_day_batch_or_with_a_posting_in_no_batch_is_wrong():
    assert day_batch_mismatches(CLOSED, POSTINGS, [LATE_BATCH]) == {
        "day_batch_missing": [f"R-S01 {DAY}"],
        "day_batches_not_covering_postings": [
            f"R-S01 {DAY}: 1 postings in 1 batches, 2 on finance.postings; posting digests differ; "
            "per-account totals differ"]}
    assert day_batch_mismatches(CLOSED, POSTINGS, [DAY_BATCH])["day_batches_not_covering_postings"]


def test_a_posting_counted_twice_or_a_batch_resent_with_other_books_is_wrong():
    twice = batch(1, ["P1"], DAY_BATCH.value["totals"])
    found = day_batch_mismatches(CLOSED, POSTINGS[:1], [DAY_BATCH, twice])
    assert "a listed posting is twice in the batches or not on finance.postings" in \
        found["day_batches_not_covering_postings"][0]
    other_books = batch(0, ["P1"], {"1100": sides("11.00", "0.00"), "4000": sides("0.00", "11.00")})
    assert day_batch_mismatches(CLOSED, POSTINGS, [DAY_BATCH, LATE_BATCH, other_books]) == {
        "day_batch_conflicts": [f"US01:R-S01:{DAY}#0"]}


def test_the_closed_days_are_the_pos_day_closes_sent():
    def pos(value: bytes, bad: str | None = None) -> RawInput:
        return RawInput("pos.transactions", 0, 0, "R-S01", value, 3, bad)

    raw = [pos(b'{"type": "DAY_CLOSE", "store_id": "R-S01", "business_date": "%s"}' % DAY.encode()),
           pos(b'{"type": "SALE", "store_id": "R-S02", "business_date": "%s"}' % DAY.encode()),
           pos(b'{"type": "DAY_CLOSE", "lines": [', bad="MALFORMED_JSON")]
    assert closed_days(raw) == CLOSED


# --- channel availability ------------------------------------------------------------------------

LOCATIONS = [{"location_id": "R-S01", "channels": ["store", "web"]}, {"location_id": "R-DC1", "channels": ["web", "amazon"]}]


def location_record(location: str, available: int, version: int) -> OutRecord:
    value = {"sku": "R-SKU1", "location_id": location, "available": available, "version": version}
    return OutRecord("inventory.availability", 0, 0, f"R-SKU1@{location}", value, b"")


def channel_record(channel: str, by_location: dict, version: int) -> OutRecord:
    value = {"channel": channel, "sku": "R-SKU1", "available": sum(by_location.values()), "by_location": by_location,
             "version": version}
    return OutRecord("channel.availability", 0, 0, f"{channel}:R-SKU1", value, b"")


AVAILABILITY = [location_record("R-S01", 4, 1), location_record("R-S01", 3, 2), location_record("R-DC1", 10, 1),
                location_record("R-S01", 3, 2)]   # a re-sent version


def test_the_last_channel_record_of_each_sku_adds_up_the_last_availability_of_the_locations_serving_it():
    channels = [channel_record("web", {"R-S01": 4, "R-DC1": 10}, 1), channel_record("web", {"R-S01": 3, "R-DC1": 10}, 2),
                channel_record("store", {"R-S01": 3}, 1), channel_record("amazon", {"R-DC1": 10}, 1)]
    assert channel_mismatches(AVAILABILITY, channels, LOCATIONS) == {}


def test_a_channel_left_at_an_older_sum_or_never_published_is_wrong():
    channels = [channel_record("web", {"R-S01": 3, "R-DC1": 10}, 2), channel_record("web", {"R-S01": 4, "R-DC1": 10}, 1),
                channel_record("store", {"R-S01": 4}, 1)]   # the last change at R-S01 never reached the store channel
    assert channel_mismatches(AVAILABILITY, channels, LOCATIONS) == {
        "channel_availability_missing": ["amazon:R-SKU1 (expected 10)"],
        "channel_availability_not_final": ["store:R-SKU1 version 1: 4 {'R-S01': 4}, the locations say 3 {'R-S01': 3}"]}


def test_a_stale_channel_keeps_its_skus_channel_availability_and_network_records_for_the_report():
    channel = OutRecord("channel.availability", 4, 10, "amazon:R-SKU033",
                        {"channel": "amazon", "sku": "R-SKU033", "version": 28, "available": 164,
                         "by_location": {"R-DC1": 89, "R-DC2": 75}}, b"")
    availability = [OutRecord("inventory.availability", 4, 11, "R-SKU033|R-DC2",
                              {"sku": "R-SKU033", "location_id": "R-DC2", "version": 9, "available": 69,
                               "cause": "SALE"}, b""),
                    OutRecord("inventory.availability", 5, 3, "R-SKU007|R-DC2",
                              {"sku": "R-SKU007", "location_id": "R-DC2", "version": 1, "available": 4}, b"")]
    network = OutRecord("app-sku-network-changelog", 4, 3, "R-SKU033",
                        {"by_location": {"R-DC2": [75, 8]}, "channel_versions": {"amazon": 28},
                         "pending": {}}, b"")
    stale = ["amazon:R-SKU033 version 28: 164 {...}, the locations say 158 {...}",
             "web:R-SKU033 (expected 3)"]
    assert channel_forensics(stale, availability, [channel], [network]) == {"R-SKU033": {
        "channel_records": ["p4@10 amazon v28 164 {'R-DC1': 89, 'R-DC2': 75}"],
        "availability_records": ["p4@11 R-DC2 v9 available=69 cause=SALE"],
        "network_changelog": ["p4@3 {'R-DC2': [75, 8]} versions={'amazon': 28} pending={}"]}}
