"""A hostile producer on the real broker (SPEC §4): good records interleaved with every kind of bad one.

Every good record's effect reaches the positions, every bad record ends as exactly one dead letter
with its code (matched by source topic, partition and offset from the producer's own send results),
every letter fits in a Kafka record, and the worker stays alive and stops within 30 s of SIGTERM.

The worker is this test's own (app id, data dir, web port): raw topics are shared with the other
e2e workers of the session, so letters are told apart by the `app_id` they carry.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app import topics as t
from app.domain.parsing import parse_record
from app.domain.reconciliation import parse_snapshot
from app.domain.sources import SOURCES
from app.models.records import Rejection
from app.web.dlq import INDEX_RAW_CHARS
from tests.conftest import TEST_HOME
from tests.e2e.harness import WorkerProcess, api, declare_changelogs, group_caught_up, wait_for_api, wait_for_master
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e

APP_ID = "e2e-hostile"
LETTER_LIMIT = 900 * 1024
GARBAGE = 120           # records drawn from the hypothesis strategies below
FAR = "9999-12-31T00:00:00Z"


@dataclass
class Sent:
    """One record as the producer sent it, with where the broker put it."""

    topic: str
    key: str | None
    value: bytes | None
    name: str
    expected_code: str | None = None   # None: a good record
    partition: int = -1
    offset: int = -1

    @property
    def where(self) -> tuple[str, int, int]:
        return self.topic, self.partition, self.offset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hostile_worker(bootstrap):
    data = TEST_HOME / "workers" / "hostile"
    shutil.rmtree(data, ignore_errors=True)
    declare_changelogs(bootstrap, APP_ID)  # avoids the fresh-app-id changelog metadata race
    worker = WorkerProcess(bootstrap, data, web_port=_free_port(), app_id=APP_ID)
    try:
        yield worker.start(wait_ready=180)
    finally:
        worker.kill()


# --- The records ---------------------------------------------------------------------------------

def encode(value: object) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


def named_bad_records(s: Scenario, store: str, sku: str) -> list[Sent]:
    """The cases SPEC §4 names, each with the code it must earn."""
    def pos_line(**fields) -> dict:
        return {"line_no": 1, "sku": sku, "upc": None, "quantity": 1, "unit_price": "1.00", "discount": "0.00",
                "tax": "0.00", "original_transaction_id": None, "inspection_required": False, **fields}

    def pos(name: str, line: dict) -> Sent:
        # The line is put in after Scenario.pos, whose tender total cannot add up 1E+1000000.
        _, key, value = s.pos(store, "SALE", [pos_line()], tenders=[], transaction_id=f"{s.name}-{name}")
        return Sent(t.POS, key, encode({**value, "lines": [line]}), name)

    def wms(name: str, lines: list[dict], event_id: str | None = None) -> Sent:
        _, key, value = s.wms(store, "RECEIPT", lines, event_id=event_id or f"{s.name}-{name}")
        return Sent(t.WMS, key, encode(value), name)

    def dated(name: str, record: tuple[str, str, dict], field: str, when: str) -> Sent:
        topic, key, value = record
        return Sent(topic, key, encode({**value, field: when}), name)

    receipt_line = {"sku": sku, "quantity": 1, "unit_cost": "1.00"}
    big = orjson.dumps({"event_id": f"{s.name}-ONE-MB", "location_id": store, "type": "RECEIPT",
                        "occurred_at": s.at(0), "lines": [receipt_line], "padding": "x" * 1_000_000})
    snapshot = {"snapshot_id": f"{s.name}-SNAP-9999", "location_id": store, "as_of": "9999-12-31T00:00:00Z",
                "balances": [{"sku": sku, "on_hand": 1}]}
    cases = [
        (pos("PRICE-1E30", pos_line(unit_price="1e30")), "OUT_OF_RANGE"),
        (pos("TAX-1E+1000000", pos_line(tax="1E+1000000")), "OUT_OF_RANGE"),
        (dated("ECOM-9999", s.ecom("order_created", f"{s.name}-O9999", store, [{"sku": sku, "quantity": 1}]),
               "occurred_at", FAR), "OUT_OF_RANGE"),
        (dated("OMS-9999", s.oms("reservation_released", f"{s.name}-O9999", "1", sku, 1, store),
               "occurred_at", FAR), "OUT_OF_RANGE"),
        (dated("MKT-9999", s.marketplace("ACCEPTED", f"{s.name}-M9999", store,
                                         [{"seller_sku": "NONE", "qty": 1}]), "occurred_at", "9999-01-01T00:00:00Z"),
         "OUT_OF_RANGE"),
        (Sent(t.ERP_SNAPSHOTS, store, encode(snapshot), "ERP-AS-OF-9999"), "OUT_OF_RANGE"),
        (wms("COST-1E30", [{"sku": sku, "quantity": 1, "unit_cost": "1e30"}]), "OUT_OF_RANGE"),
        (Sent(t.WMS, store, big, "ONE-MB"), "TOO_LARGE"),
        (Sent(t.WMS, store, b"\xff\xfe\xc0" * 300_000, "900KB-INVALID-UTF8"), "TOO_LARGE"),
        # Two bad records back to back in one partition (same key, nothing between them).
        (wms("LONG-ID-150-LINES", [receipt_line] * 150, event_id="E" * 8192), "TOO_LARGE"),
        (wms("1001-LINES", [receipt_line] * 1001), "TOO_LARGE"),
        (wms("QTY-10M", [{"sku": sku, "quantity": 10_000_000, "unit_cost": "1.00"}]), "OUT_OF_RANGE"),
        (Sent(t.POS, store, b'{"transaction_id": "' + s.name.encode() + b'-\xff\xfe", "store_id": "x"}',
              "SMALL-INVALID-UTF8"), "MALFORMED_JSON"),
        (Sent(t.POS, store, b'{"transaction_id": "' + s.name.encode() + b'-CUT", "store_id": ', "CUT-JSON"),
         "MALFORMED_JSON"),
        (Sent(t.WMS, store, None, "TOMBSTONE"), "MALFORMED_JSON"),
        (Sent(t.INSPECTIONS, "K" * 20_000, encode([1, 2, 3]), "ARRAY-WITH-20KB-KEY"), "SCHEMA_INVALID"),
    ]
    for sent, code in cases:
        sent.expected_code = code
    return [sent for sent, _ in cases]


MAX_MONEY = "999999999999.9999"
MAX_QUANTITY = 1_000_000
SALE_LINES = 200


def records_at_the_limits(s: Scenario, store: str, sku: str) -> tuple[list[Sent], dict]:
    """Valid records with their values at the limits: they must be applied, not dead-lettered.

    The item's case_pack is 1,000,000, so one receipt line of 1,000,000 cases is 10^12 eaches at the
    largest cost; the sale has SALE_LINES lines of 1,000,000 units at the largest price and tax, under a
    transaction id of exactly 128 characters (no tenders: their total could not be written). Not 1,000
    lines: every later worker of a new app id in the session replays the raw topics, this sale included."""
    topic, key, receipt = s.receipt(store, [(sku, MAX_QUANTITY, MAX_MONEY)], uom="CASE", event_id="R" * 128)
    line = {"sku": sku, "quantity": MAX_QUANTITY, "unit_price": MAX_MONEY, "tax": MAX_MONEY}
    _, pos_key, sale = s.pos(store, "SALE", [{"sku": sku, "quantity": 1, "unit_price": "1.00"}], tenders=[],
                             transaction_id="T" * 128)
    sale = {**sale, "lines": [{**sale["lines"][0], **line, "line_no": n} for n in range(1, SALE_LINES + 1)]}
    records = [Sent(topic, key, encode(receipt), "LIMIT-RECEIPT-10^12"),
               Sent(t.POS, pos_key, encode(sale), "LIMIT-SALE")]
    assert all(expected_rejection(r.topic, r.value) is None for r in records)
    effect = {"on_hand": MAX_QUANTITY * MAX_QUANTITY - SALE_LINES * MAX_QUANTITY, "reserved": 0,
              "version": 1 + SALE_LINES}
    return records, effect


# Garbage: each raw topic's record shape with one field replaced by something no producer should send.
def _templates() -> list[tuple[str, str, dict]]:
    g = "HOSTILE-GARBAGE"
    line = {"sku": f"{g}-SKU", "quantity": 1}
    when = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")   # the same records all day: a failure repeats
    return [
        (t.POS, f"{g}-S", {"transaction_id": f"{g}-TX", "store_id": f"{g}-S", "register_id": "R1", "type": "SALE",
                           "business_date": when[:10], "occurred_at": when, "currency": "USD", "order_id": None,
                           "lines": [{"line_no": 1, **line, "unit_price": "1.00", "tax": "0.10"}],
                           "tenders": [{"type": "CARD", "amount": "1.10"}]}),
        (t.ECOM, f"{g}-O", {"event_id": f"{g}-E", "event": "order_created", "order_id": f"{g}-O", "occurred_at": when,
                            "fulfillment_location": f"{g}-DC",
                            "lines": [{"line_id": "1", **line, "unit_price": "1.00", "tax": "0.10"}]}),
        (t.MARKETPLACE, f"{g}-M", {"message_id": f"{g}-MSG", "marketplace": "AMAZON", "status": "ACCEPTED",
                                   "order_id": f"{g}-M", "occurred_at": when, "ship_node": f"{g}-DC",
                                   "items": [{"order_item_id": "1", "seller_sku": f"{g}-A", "qty": 1,
                                              "item_price": "1.00", "item_tax": "0.10"}]}),
        (t.OMS, f"{g}-O", {"event_id": f"{g}-OMS", "type": "reservation_released", "order_id": f"{g}-O",
                           "line_id": "1", "sku": f"{g}-SKU", "quantity": 1, "from_location": f"{g}-DC",
                           "occurred_at": when}),
        (t.WMS, f"{g}-DC", {"event_id": f"{g}-W", "location_id": f"{g}-DC", "type": "RECEIPT", "occurred_at": when,
                            "lines": [{**line, "uom": "EACH", "unit_cost": "1.00"}]}),
        (t.INSPECTIONS, f"{g}-S", {"inspection_id": f"{g}-I", "location_id": f"{g}-S", "occurred_at": when,
                                   "lines": [{**line, "disposition": "RESTOCK"}]}),
        (t.ERP_SNAPSHOTS, f"{g}-S", {"snapshot_id": f"{g}-SNAP", "location_id": f"{g}-S", "as_of": when,
                                     "balances": [{"sku": f"{g}-SKU", "on_hand": 1}]}),
    ]


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in [(*prefix, k), *_paths(v, (*prefix, k))]]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in [(*prefix, i), *_paths(v, (*prefix, i))]]
    return []


def _replaced(value: object, path: tuple, new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


hostile_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308]),
    st.integers(min_value=1_000_001, max_value=10**40), st.integers(min_value=-10**40, max_value=-1),
    st.sampled_from(["NaN", "-Infinity", "1e30", "-1e30", "1E+1000000", "1e-30", "0.00001", "9" * 60]),
    st.sampled_from([FAR, "0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2999-01-01", "+275760-09-13T00:00:00Z",
                     "9999-12-31", "yesterday", ""]),
    st.dates(min_value=datetime(1, 1, 1).date(), max_value=datetime(1999, 12, 31).date()).map(str),
    st.dates(min_value=datetime(2100, 1, 1).date()).map(lambda d: f"{d}T00:00:00Z"),
    st.text(min_size=129, max_size=3000),
    st.none(), st.booleans(), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def hostile_record(draw) -> tuple[str, str, bytes]:
    kind = draw(st.sampled_from(["mutated"] * 6 + ["non_object", "invalid_utf8", "cut"]))
    topic, key, template = draw(st.sampled_from(_templates()))
    if kind == "non_object":
        value = draw(st.one_of(st.lists(st.integers(), max_size=5), st.integers(), st.text(max_size=50),
                               st.none(), st.floats(allow_nan=False)))
        return topic, key, json.dumps(value).encode()
    if kind == "invalid_utf8":
        junk = draw(st.binary(min_size=1, max_size=2000))
        return topic, key, orjson.dumps(template)[:-1] + b', "note": "' + junk + b'\xff\x80"}'
    if kind == "cut":
        whole = orjson.dumps(template)
        return topic, key, whole[:draw(st.integers(min_value=0, max_value=len(whole) - 1))]
    path = draw(st.sampled_from(_paths(template)))
    # Python's json writes NaN and Infinity, which no JSON parser must accept: MALFORMED_JSON.
    return topic, key, json.dumps(_replaced(template, path, draw(hostile_values))).encode()


def expected_rejection(topic: str, raw: bytes) -> str | None:
    """The code the edge gives this record (the domain parser, run here), or None if it would pass."""
    if topic == t.ERP_SNAPSHOTS:
        result = parse_snapshot(raw)
    else:
        source = SOURCES[topic]
        result = parse_record(source.model, raw, source.id_field)
    return result.error_code.value if isinstance(result, Rejection) else None


def drawn_garbage(count: int) -> list[Sent]:
    """`count` records from the strategies (derandomized: the same ones on a given day), each a certain reject."""
    drawn: list[tuple[str, str, bytes]] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data):
        drawn.append(data.draw(hostile_record()))

    draw()
    garbage = []
    for n, (topic, key, raw) in enumerate(drawn):
        code = expected_rejection(topic, raw)
        if code is not None:  # a mutation that left the record valid (a float 2.0 as a quantity, say)
            garbage.append(Sent(topic, key, raw, f"garbage-{n}", expected_code=code))
    return garbage


# --- Producing and reading -----------------------------------------------------------------------

async def produce_all(bootstrap: str, records: list[Sent]) -> None:
    """Send in order, recording each record's partition and offset from the broker's acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        pending = []
        for record in records:
            delivery = await producer.send(record.topic, record.value,
                                           key=record.key.encode() if record.key is not None else None)
            pending.append((record, delivery))
            if record.value is not None and len(record.value) > 64 * 1024:
                await producer.flush()   # a big record in a batch of its own, under message.max.bytes
        await producer.flush()
        for record, delivery in pending:
            metadata = await delivery
            record.partition, record.offset = metadata.partition, metadata.offset
    finally:
        await producer.stop()


async def read_letters(bootstrap: str) -> list[tuple[int, dict]]:
    """Every letter on inventory.dlq with its serialized size."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=2 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(t.DLQ)
        while not partitions:   # metadata of a topic the consumer has not asked about yet
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(t.DLQ)
        tps = [TopicPartition(t.DLQ, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                letters += [(len(m.value), orjson.loads(m.value)) for m in messages]
        return letters
    finally:
        await consumer.stop()


def position(worker: WorkerProcess, sku: str, location: str) -> dict | None:
    answer = api(worker, f"/v1/positions/{quote(sku, safe='')}/{quote(location, safe='')}")
    return answer.json if answer.status == 200 else None


# --- The test ------------------------------------------------------------------------------------

def test_a_hostile_producer_loses_nothing_and_stops_nothing(bootstrap, hostile_worker):
    worker = hostile_worker
    s = Scenario("hostile")
    skus, stores = [s.sku(1), s.sku(2)], [s.loc("S1"), s.loc("S2")]
    limit_sku, limit_store = s.sku(3), s.loc("S3")
    asyncio.run(_send_master(bootstrap, s))
    wait_for_master(worker, skus=[*skus, limit_sku], locations=[*stores, limit_store])

    # Good records, each with a known effect: receipts and sales at our SKUs, web orders reserving.
    good: list[Sent] = []
    expected = {(sku, store): {"on_hand": 0, "reserved": 0, "version": 0} for sku in skus for store in stores}
    for n in range(12):
        sku, store = skus[n % 2], stores[(n // 2) % 2]
        topic, key, value = s.receipt(store, [(sku, 10 + n, "2.50")], at=n)
        good.append(Sent(topic, key, encode(value), f"receipt-{n}"))
        expected[sku, store]["on_hand"] += 10 + n
        topic, key, value = s.pos(store, "SALE", [{"sku": sku, "quantity": 1 + n % 3, "unit_price": "4.99"}], at=n)
        good.append(Sent(topic, key, encode(value), f"sale-{n}"))
        expected[sku, store]["on_hand"] -= 1 + n % 3
        expected[sku, store]["version"] += 2
    for n, store in enumerate(stores):
        topic, key, value = s.ecom("order_created", f"{s.name}-W{n}", store, [{"sku": skus[0], "quantity": 2}], at=n)
        good.append(Sent(topic, key, encode(value), f"order-{n}"))
        expected[skus[0], store]["reserved"] += 2
        expected[skus[0], store]["version"] += 1

    at_limits, expected[limit_sku, limit_store] = records_at_the_limits(s, limit_store, limit_sku)
    good += at_limits

    bad = named_bad_records(s, stores[0], skus[0]) + drawn_garbage(GARBAGE)
    # Interleave: a good record after every few bad ones; the named pair stays back to back.
    stream: list[Sent] = []
    goods = iter(good)
    for n, record in enumerate(bad):
        stream.append(record)
        if n % 4 == 3 or record.name == "1001-LINES":
            stream.extend(next(goods, None) for _ in range(2))
    stream = [r for r in stream if r is not None] + list(goods)
    assert len(stream) == len(good) + len(bad)

    asyncio.run(produce_all(bootstrap, stream))
    started = time.monotonic()
    pair = [r for r in stream if r.name in ("LONG-ID-150-LINES", "1001-LINES")]
    assert pair[0].where[:2] == pair[1].where[:2] and pair[1].offset == pair[0].offset + 1, "not back to back"

    # Every good record's effect is in the positions, on this worker's own state.
    def positions_reached() -> dict:
        return {(sku, store): position(worker, sku, store) for sku, store in expected}

    deadline = time.monotonic() + 120
    seen = positions_reached()
    while time.monotonic() < deadline and any(
            (p or {}).get("version", 0) < want["version"] for p, want in zip(seen.values(), expected.values())):
        time.sleep(1)
        seen = positions_reached()
    for place, want in expected.items():
        got = seen[place]
        assert got is not None, f"no position {place}"
        assert {k: got[k] for k in want} == want, (place, got)
    applied_after = time.monotonic() - started
    # Every stage has committed past what is in its input by now: a later stage's letter (PROCESSING_ERROR
    # from positions, finance, reconciliation) for a record of ours would be written.
    group_caught_up(bootstrap, APP_ID, [*t.RAW_TOPICS, t.ERP_SNAPSHOTS, t.MOVEMENTS, t.LEDGER,
                                        t.RECON_CHECKS, t.RECON_RESULTS], timeout=120)
    caught_up_after = time.monotonic() - started

    # Every bad record: exactly one letter from this worker, at its topic, partition and offset.
    wanted = {r.where: r for r in bad}
    deadline = time.monotonic() + 120
    while True:
        letters = [(size, v) for size, v in asyncio.run(read_letters(bootstrap)) if v.get("app_id") == APP_ID]
        ours = Counter((v["source_topic"], v["partition"], v["offset"]) for _, v in letters)
        if all(ours[w] >= 1 for w in wanted) or time.monotonic() > deadline:
            break
        time.sleep(2)
    missing = [wanted[w].name for w in wanted if ours[w] == 0]
    assert not missing, f"bad records without a dead letter: {missing}\n{worker.log_tail()}"
    time.sleep(3)   # a duplicate letter would come just behind the first
    letters = [(size, v) for size, v in asyncio.run(read_letters(bootstrap)) if v.get("app_id") == APP_ID]
    mine = {w: [] for w in wanted}
    for size, letter in letters:
        where = (letter["source_topic"], letter["partition"], letter["offset"])
        if where in mine:
            mine[where].append((size, letter))
        else:  # a good record of ours dead-lettered, at the edge or by a later stage (PROCESSING_ERROR)
            assert s.name not in letter["raw_value"] and s.name not in (letter["source_event_id"] or ""), \
                f"a good record was dead-lettered: {str(letter)[:1500]}"
    assert {wanted[w].name: len(v) for w, v in mine.items() if len(v) != 1} == {}

    by_code: Counter[str] = Counter()
    largest = 0
    for where, [(size, letter)] in mine.items():
        record = wanted[where]
        raw = record.value or b""
        assert letter["error_code"] == record.expected_code, (record.name, letter["error_code"],
                                                               letter["error_detail"][:300])
        assert size < LETTER_LIMIT, (record.name, size)
        assert letter["raw_size"] == len(raw) and letter["raw_sha256"] == hashlib.sha256(raw).hexdigest()
        assert letter["raw_truncated"] == (len(orjson.dumps(raw.decode("utf-8", "replace"))) > 256 * 1024)
        by_code[letter["error_code"]] += 1
        largest = max(largest, size)

    # The operators' DLQ view of this worker lists the big letters with the start of their raw value only.
    big = sum(1 for _, letter in (m[0] for m in mine.values()) if letter["raw_size"] > INDEX_RAW_CHARS)

    def big_ones(answer) -> list[dict]:
        return [r for r in answer.json.get("records", []) if r.get("app_id") == APP_ID
                and s.name in r.get("raw_value", "") + str(r.get("source_event_id")) + (r.get("key") or "")
                and r.get("raw_size", 0) > INDEX_RAW_CHARS] if answer.status == 200 else []

    view = wait_for_api(worker, "/v1/dlq?limit=1000", until=lambda a: len(big_ones(a)) >= big, timeout=60)
    assert all(len(r["raw_value"]) <= INDEX_RAW_CHARS and r["raw_value_cut_in_view"] for r in big_ones(view))
    view_kib = len(view.raw) // 1024

    # Alive, then stopped by SIGTERM within 30 s.
    assert worker.proc.poll() is None, worker.log_tail()
    assert api(worker, "/healthz", token=None).status == 200
    rss_mib = _rss_mib(worker.proc.pid)
    stop_started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.wait(timeout=60)
    stop_seconds = time.monotonic() - stop_started
    assert stop_seconds < 30, f"SIGTERM to exit took {stop_seconds:.1f} s"

    generated = sum(1 for r in bad if r.name.startswith("garbage-"))
    summary = "\n".join([
        "hostile producer (tests/e2e/test_hostile_producer.py):",
        f"  records in: {len(stream)} ({len(good)} good, {len(bad)} bad: {len(bad) - generated} named, "
        f"{generated} generated)",
        f"  applied: {len(good)} of {len(good)} good records (positions at the expected on_hand/reserved/version),"
        f" {len(at_limits)} of them at the limits (10^12 eaches received, a {SALE_LINES}-line sale of 10^6 units a"
        f" line at the largest price and tax)",
        f"  dead letters: {sum(by_code.values())}, one per bad record, by code: {dict(sorted(by_code.items()))}",
        "  lost: 0, duplicated: 0",
        f"  largest letter: {largest} bytes (limit {LETTER_LIMIT}); GET /v1/dlq?limit=1000 answer: {view_kib} KiB"
        f" ({big} of our letters hold more than {INDEX_RAW_CHARS} characters of raw value, the view shows that much)",
        f"  after the last send: positions complete in {applied_after:.1f} s, every stage committed past its input"
        f" in {caught_up_after:.1f} s",
        f"  worker alive (/healthz 200, RSS {rss_mib} MiB) at the end; SIGTERM to exit: {stop_seconds:.1f} s",
    ])
    print("\n" + summary)
    (TEST_HOME / "hostile-producer-summary.txt").write_text(summary + "\n")


def _rss_mib(pid: int) -> int | None:
    try:
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        return None
    return next((int(line.split()[1]) // 1024 for line in status.splitlines() if line.startswith("VmRSS:")), None)


async def _send_master(bootstrap: str, s: Scenario) -> None:
    from app.kafka_io import produce
    await produce(bootstrap, [s.item(1), s.item(2), s.item(3, case_pack=MAX_QUANTITY, standard_cost=MAX_MONEY),
                              s.location("S1"), s.location("S2"), s.location("S3")])
