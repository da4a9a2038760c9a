"""The chaos runs' check of the day batches (tests/chaos/verify.py), without a broker: what it accepts
as a closed day's books, and each way it tells them wrong."""
from __future__ import annotations

from app.domain.day_batches import posting_digest_of
from tests.chaos.kafka_tools import OutRecord
from tests.chaos.oracle import RawInput
from tests.chaos.verify import closed_days, day_batch_mismatches

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
