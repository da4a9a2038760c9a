"""Chaos workload: a seeded, phased retail workload whose final state does not depend on cross-topic timing.

Kafka orders records within one partition only. Every rule whose result depends on the order of
movements at one SKU@LOCATION is therefore fed either from one raw partition, or across a *phase
barrier* (the driver waits until the pipeline has applied every movement of phase k before it
produces phase k+1):

- a reservation's life (create → fulfil/cancel) stays on its order's partition of one topic;
  cross-topic consumers of a reservation (OMS re-sourcing and release, POS click-and-collect
  pickups) only touch orders created in an earlier phase, and lock the order for the rest of the phase;
- a cycle count locks its SKU@STORE for the phase to WMS events of that store (one partition of
  `wms.events`), so late adjustments/receipts after it, and older counts, are ordered with it;
  late POS sales against a count come in a later phase;
- an inspection disposes of a return produced in an earlier phase: quality_control floors at 0, so
  an inspection reaching the pipeline before its return would leave the units in the bucket;
- everything else (sales, returns, receipts, transfers, adjustments) commutes for the buckets
  compared (on_hand, reserved, quality_control, damaged, in_transit). Only whether an inflow
  revalues negative stock (COST_ADJUSTMENT) depends on cross-topic order: the oracle allows it.

Within a phase the records are shuffled in small windows (out-of-order delivery), producers re-send
some records (same payload, at once or phases later), and bad records (malformed JSON, schema errors,
unknown items and locations, unknown units of measure) are mixed in. Each record carries Kafka
headers `chaos-phase` and, for bad input, `chaos-bad` (the error code expected in the DLQ); the
pipeline ignores headers.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson

POS, ECOM, MARKETPLACE, OMS, WMS, INSPECTIONS = (
    "pos.transactions", "ecom.orders", "marketplace.orders", "oms.reservations", "wms.events",
    "returns.inspections")
MASTER_ITEMS, MASTER_LOCATIONS = "master.items", "master.locations"
RAW_TOPICS = (POS, ECOM, MARKETPLACE, OMS, WMS, INSPECTIONS)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class RawRecord:
    """One record as a producer sends it, with the phase it belongs to (and its expected DLQ code)."""

    topic: str
    key: str | None
    value: bytes
    phase: int
    bad: str | None = None
    run: str = ""  # the run's namespace: a broker may hold records of earlier runs

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [("chaos-phase", str(self.phase).encode()), ("chaos-run", self.run.encode())]
        if self.bad:
            headers.append(("chaos-bad", self.bad.encode()))
        return headers


@dataclass
class OrderLine:
    sku: str
    quantity: int
    location: str
    open: bool = True


@dataclass
class Order:
    order_id: str
    kind: str  # "ecom" or "mp"
    created_phase: int
    lines: dict[str, OrderLine]
    locked_phase: int = -1  # a cross-topic event touched it in this phase: nothing else this phase
    touched_phase: int = -1  # any event touched it in this phase

    def open_lines(self) -> list[str]:
        return [line_id for line_id, line in self.lines.items() if line.open]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


@dataclass
class ChaosWorkload:
    namespace: str
    seed: int = 1
    n_skus: int = 40
    n_stores: int = 4
    n_dcs: int = 2
    duplicate_rate: float = 0.05
    bad_rate: float = 0.02
    shuffle_window: int = 6
    counts_per_phase: int = 4
    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=45))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = self.start
        self.business_date = self.start.date().isoformat()
        self.seq = 0
        self.orders: list[Order] = []
        self.sales: list[tuple[str, str, str, int]] = []        # (transaction_id, store, sku, qty)
        self.to_inspect: list[tuple[str, str, int, int]] = []     # (store, sku, qty, phase of the return)
        self.in_transit: list[tuple[str, str, str, int]] = []    # (transfer_id, destination, sku, qty)
        self.counted: dict[tuple[str, str], datetime] = {}        # (sku, store) -> latest count time
        self.resend_later: list[RawRecord] = []
        self.phase = 0
        self.locked: set[tuple[str, str]] = set()                 # (sku, store) count keys this phase

    # --- names --------------------------------------------------------------------------------
    @property
    def skus(self) -> list[str]:
        return [f"{self.namespace}-SKU{i:03d}" for i in range(1, self.n_skus + 1)]

    @property
    def stores(self) -> list[str]:
        return [f"{self.namespace}-S{i:02d}" for i in range(1, self.n_stores + 1)]

    @property
    def dcs(self) -> list[str]:
        return [f"{self.namespace}-DC{i}" for i in range(1, self.n_dcs + 1)]

    @property
    def locations(self) -> list[str]:
        return self.dcs + self.stores

    def _n(self, sku: str) -> int:
        return int(sku.rsplit("SKU", 1)[1])

    def upc(self, sku: str) -> str:
        return f"{zlib.crc32(self.namespace.encode()) % 10_000:04d}{self._n(sku):08d}"

    def alias(self, sku: str) -> str:
        return f"{self.namespace}-AMZ{self._n(sku):03d}"

    def case_pack(self, sku: str) -> int:
        return 6 if self._n(sku) % 3 == 0 else 12

    def standard_cost(self, sku: str) -> Decimal:
        return Decimal(3 + self._n(sku) % 37) + Decimal("0.25")

    def price(self, sku: str) -> Decimal:
        return (self.standard_cost(sku) * Decimal("2.2")).quantize(CENT)

    def _id(self, prefix: str) -> str:
        self.seq += 1
        return f"{self.namespace}-{prefix}-{self.seq:07d}"

    def _tick(self) -> datetime:
        self.clock += timedelta(milliseconds=self.rng.randint(20, 300))
        return self.clock

    def _rec(self, topic: str, key: str | None, payload: dict | bytes, bad: str | None = None) -> RawRecord:
        value = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        return RawRecord(topic, key, value, self.phase, bad, self.namespace)

    # --- master data and opening stock -------------------------------------------------------
    def master_records(self) -> list[RawRecord]:
        records = []
        for sku in self.skus:
            records.append(self._rec(MASTER_ITEMS, sku, {
                "sku": sku, "description": f"Chaos item {sku}", "upcs": [self.upc(sku)],
                "marketplace_aliases": {"AMAZON": self.alias(sku)}, "case_pack": self.case_pack(sku),
                "standard_cost": str(self.standard_cost(sku)), "active": True}))
        for store in self.stores:
            records.append(self._rec(MASTER_LOCATIONS, store, {
                "location_id": store, "type": "STORE", "legal_entity": "US01", "currency": "USD",
                "channels": ["store", "web"], "safety_stock": 1}))
        for dc in self.dcs:
            records.append(self._rec(MASTER_LOCATIONS, dc, {
                "location_id": dc, "type": "DC", "legal_entity": "US01", "currency": "USD",
                "channels": ["web", "amazon"], "safety_stock": 0}))
        return records

    def opening_stock(self) -> list[RawRecord]:
        """Phase 0: a receipt of every SKU at every location (some in cases)."""
        self.phase = 0
        records = []
        for loc in self.locations:
            for i in range(0, self.n_skus, 8):
                lines = []
                for sku in self.skus[i:i + 8]:
                    if self.rng.random() < 0.25:
                        lines.append(self._wms_line(sku, 3, uom="CASE",
                                                    unit_cost=self.standard_cost(sku) * self.case_pack(sku)))
                    else:
                        lines.append(self._wms_line(sku, self.rng.randint(25, 45),
                                                    unit_cost=self.standard_cost(sku)))
                records.append(self._wms(loc, "RECEIPT", lines, reference=self._id("PO")))
        return records

    # --- one phase -----------------------------------------------------------------------------
    def phase_records(self, phase: int, n_events: int, *, final: bool = False) -> list[RawRecord]:
        """The records of one phase: n_events business events plus re-sends and bad input, shuffled."""
        self.phase = phase
        self.locked = set()
        candidates = [(sku, store) for sku in self.skus for store in self.stores]
        self.rng.shuffle(candidates)
        counts_todo = candidates[:self.counts_per_phase]
        self.locked = set(counts_todo)
        count_at = sorted(self.rng.sample(range(n_events), min(len(counts_todo), n_events)))
        count_slots = dict(zip(count_at, counts_todo, strict=False))

        logical: list[RawRecord] = []
        # Re-sends of records from earlier phases: the producer retried long after the fact.
        carried, self.resend_later = self.resend_later, []
        for i in range(n_events):
            if i in count_slots:
                logical.extend(self._count_block(*count_slots[i]))
                continue
            for record in self._next_event():
                logical.append(record)
                if self.rng.random() < self.duplicate_rate:
                    if self.rng.random() < 0.5:
                        logical.append(record)
                    else:
                        self.resend_later.append(record)
            if self.rng.random() < self.bad_rate:
                logical.append(self._bad_record())
        for record in carried:
            logical.insert(self.rng.randrange(len(logical) + 1),
                           RawRecord(record.topic, record.key, record.value, phase, record.bad, record.run))
        if final:
            logical.extend(self._day_close())
        return self._shuffle(logical)

    def _shuffle(self, records: list[RawRecord]) -> list[RawRecord]:
        """Out-of-order delivery: shuffle inside small windows."""
        out: list[RawRecord] = []
        w = max(1, self.shuffle_window)
        for i in range(0, len(records), w):
            window = records[i:i + w]
            self.rng.shuffle(window)
            out.extend(window)
        return out

    def _next_event(self) -> list[RawRecord]:
        r = self.rng.random()
        table = (
            (0.30, self._pos_sale), (0.36, self._pos_return), (0.40, self._pickup), (0.45, self._inspection),
            (0.58, self._ecom), (0.66, self._marketplace), (0.71, self._oms), (0.79, self._transfer),
            (0.86, self._receipt), (0.92, self._adjustment), (0.94, self._late_sale),
            (1.01, self._pos_sale),
        )
        for bound, make in table:
            if r < bound:
                records = make()
                if records:
                    return records
                break
        return self._pos_sale()

    # --- helpers -------------------------------------------------------------------------------
    def _free(self, sku: str, loc: str) -> bool:
        """May a non-WMS event touch this SKU@LOCATION in this phase (it is not a count key)?"""
        return (sku, loc) not in self.locked

    def _wms_line(self, sku: str, quantity: int, *, uom: str = "EACH", unit_cost: Decimal | None = None,
                  counted: int | None = None, reason: str | None = None) -> dict:
        return {"sku": sku, "quantity": quantity, "uom": uom,
                "unit_cost": _money(unit_cost) if unit_cost is not None else None,
                "counted_quantity": counted, "reason": reason}

    def _wms(self, loc: str, kind: str, lines: list[dict], *, at: datetime | None = None,
             reference: str | None = None, transfer_id: str | None = None,
             destination: str | None = None) -> RawRecord:
        return self._rec(WMS, loc, {
            "event_id": self._id("wms"), "location_id": loc, "type": kind,
            "occurred_at": _iso(at or self._tick()), "reference": reference, "transfer_id": transfer_id,
            "destination_id": destination, "lines": lines})

    def _pos(self, store: str, kind: str, lines: list[dict], *, order_id: str | None = None,
             at: datetime | None = None, mismatch: bool = False) -> RawRecord:
        basket = sum((Decimal(ln["unit_price"]) * ln["quantity"] - Decimal(ln["discount"]) + Decimal(ln["tax"])
                      for ln in lines), Decimal("0"))
        tendered = -basket if kind == "RETURN" else basket
        if mismatch:
            tendered += Decimal("1.00")
        txn = self._id(f"{store.rsplit('-', 1)[1]}-R{1 if kind == 'SALE' else 2}")
        return self._rec(POS, store, {
            "transaction_id": txn, "store_id": store, "register_id": "R1", "type": kind,
            "business_date": self.business_date, "occurred_at": _iso(at or self._tick()), "currency": "USD",
            "order_id": order_id, "lines": lines, "tenders": [{"type": "CARD", "amount": _money(tendered)}]})

    def _pos_line(self, n: int, sku: str, qty: int, *, original: str | None = None,
                  inspect: bool = False, by_upc: bool = False) -> dict:
        price = self.price(sku)
        discount = Decimal("0.50") if self.rng.random() < 0.1 else Decimal("0")
        tax = ((price * qty - discount) * Decimal("0.08")).quantize(CENT)
        return {"line_no": n, "sku": None if by_upc else sku, "upc": self.upc(sku) if by_upc else None,
                "quantity": qty, "unit_price": _money(price), "discount": _money(discount), "tax": _money(tax),
                "original_transaction_id": original, "inspection_required": inspect}

    # --- event kinds ---------------------------------------------------------------------------
    def _pos_sale(self) -> list[RawRecord]:
        store = self.rng.choice(self.stores)
        skus = [s for s in self.rng.sample(self.skus, self.rng.randint(1, 3)) if self._free(s, store)]
        if not skus:
            return []
        lines = [self._pos_line(n, sku, self.rng.randint(1, 3), by_upc=self.rng.random() < 0.1)
                 for n, sku in enumerate(skus, start=1)]
        record = self._pos(store, "SALE", lines, mismatch=self.rng.random() < 0.03)
        txn = orjson.loads(record.value)["transaction_id"]
        for line, sku in zip(lines, skus, strict=True):
            self.sales.append((txn, store, sku, line["quantity"]))
        return [record]

    def _pos_return(self) -> list[RawRecord]:
        if not self.sales:
            return []
        index = self.rng.randrange(len(self.sales))
        txn, _, sku, qty = self.sales[index]
        stores = [s for s in self.stores if self._free(sku, s)]
        if not stores:
            return []
        self.sales.pop(index)
        store = self.rng.choice(stores)
        inspect = self.rng.random() < 0.5
        if inspect:
            self.to_inspect.append((store, sku, qty, self.phase))
        line = self._pos_line(1, sku, qty, original=txn, inspect=inspect)
        return [self._pos(store, "RETURN", [line], mismatch=self.rng.random() < 0.03)]

    def _inspection(self) -> list[RawRecord]:
        for i, (store, sku, qty, returned_in) in enumerate(self.to_inspect):
            if returned_in < self.phase and self._free(sku, store):
                del self.to_inspect[i]
                return [self._rec(INSPECTIONS, store, {
                    "inspection_id": self._id("insp"), "location_id": store, "occurred_at": _iso(self._tick()),
                    "lines": [{"sku": sku, "quantity": qty,
                               "disposition": self.rng.choice(["RESTOCK", "RESTOCK", "DAMAGED", "SCRAP"])}]})]
        return []

    def _usable(self, order: Order, *, cross_topic: bool) -> bool:
        if order.locked_phase == self.phase:
            return False
        if cross_topic and (order.created_phase >= self.phase or order.touched_phase == self.phase):
            return False
        return all(self._free(order.lines[i].sku, order.lines[i].location) for i in order.open_lines())

    def _new_order(self, kind: str, loc: str, n_lines: int) -> Order | None:
        skus = [s for s in self.rng.sample(self.skus, n_lines) if self._free(s, loc)]
        if not skus:
            return None
        prefix = "W" if kind == "ecom" else "AMZ"
        order = Order(self._id(prefix), kind, self.phase,
                      {str(n): OrderLine(sku, self.rng.randint(1, 2), loc) for n, sku in enumerate(skus, 1)},
                      touched_phase=self.phase)
        self.orders.append(order)
        return order

    def _order_payload_lines(self, order: Order, line_ids: list[str]) -> list[dict]:
        lines = []
        for line_id in line_ids:
            line = order.lines[line_id]
            price = self.price(line.sku)
            lines.append({"line_id": line_id, "sku": line.sku, "quantity": line.quantity,
                          "unit_price": _money(price), "tax": _money(price * line.quantity * Decimal("0.08"))})
        return lines

    def _ecom(self) -> list[RawRecord]:
        open_orders = [o for o in self.orders if o.kind == "ecom" and o.open_lines()
                       and self._usable(o, cross_topic=False)]
        if open_orders and self.rng.random() < 0.55:
            order = self.rng.choice(open_orders)
            by_loc: dict[str, list[str]] = {}
            for line_id in order.open_lines():
                by_loc.setdefault(order.lines[line_id].location, []).append(line_id)
            loc, line_ids = self.rng.choice(sorted(by_loc.items()))
            if len(line_ids) > 1 and self.rng.random() < 0.4:
                line_ids = line_ids[:1]  # a partial fulfilment or cancellation
            event = "order_fulfilled" if self.rng.random() < 0.8 else "order_cancelled"
            for line_id in line_ids:
                order.lines[line_id].open = False
            order.touched_phase = self.phase
        else:
            loc = self.rng.choice(self.locations)
            order = self._new_order("ecom", loc, self.rng.choice([1, 1, 2]))
            if order is None:
                return []
            line_ids, event = list(order.lines), "order_created"
        return [self._rec(ECOM, order.order_id, {
            "event_id": self._id("evt"), "event": event, "order_id": order.order_id,
            "occurred_at": _iso(self._tick()), "currency": "USD", "fulfillment_location": loc,
            "lines": self._order_payload_lines(order, line_ids)})]

    def _marketplace(self) -> list[RawRecord]:
        open_orders = [o for o in self.orders if o.kind == "mp" and o.open_lines()
                       and self._usable(o, cross_topic=False)]
        if open_orders and self.rng.random() < 0.55:
            order = self.rng.choice(open_orders)
            status = "SHIPPED" if self.rng.random() < 0.85 else "CANCELLED"
            line_ids = order.open_lines()
            for line_id in line_ids:
                order.lines[line_id].open = False
            order.touched_phase = self.phase
        else:
            order = self._new_order("mp", self.rng.choice(self.dcs), 1)
            if order is None:
                return []
            status, line_ids = "ACCEPTED", list(order.lines)
        loc = order.lines[line_ids[0]].location
        items = []
        for line_id in line_ids:
            line = order.lines[line_id]
            price = self.price(line.sku) + Decimal("2.00")
            items.append({"order_item_id": line_id, "seller_sku": self.alias(line.sku), "qty": line.quantity,
                          "item_price": _money(price), "item_tax": _money(price * line.quantity * Decimal("0.08"))})
        return [self._rec(MARKETPLACE, order.order_id, {
            "message_id": self._id("m"), "marketplace": "AMAZON", "status": status, "order_id": order.order_id,
            "occurred_at": _iso(self._tick()), "ship_node": loc, "currency": "USD", "items": items})]

    def _oms(self) -> list[RawRecord]:
        orders = [o for o in self.orders if o.kind == "ecom" and o.open_lines() and self._usable(o, cross_topic=True)]
        if not orders:
            return []
        order = self.rng.choice(orders)
        line_id = self.rng.choice(order.open_lines())
        line = order.lines[line_id]
        order.locked_phase = order.touched_phase = self.phase
        payload = {"event_id": self._id("oms"), "order_id": order.order_id, "line_id": line_id, "sku": line.sku,
                   "quantity": line.quantity, "from_location": line.location, "occurred_at": _iso(self._tick())}
        targets = [loc for loc in self.locations if loc != line.location and self._free(line.sku, loc)]
        if targets and self.rng.random() < 0.7:
            payload.update(type="reservation_reassigned", to_location=self.rng.choice(targets))
            line.location = payload["to_location"]
        else:
            payload.update(type="reservation_released", to_location=None)
            line.open = False
        return [self._rec(OMS, order.order_id, payload)]

    def _pickup(self) -> list[RawRecord]:
        """Click-and-collect: a POS sale naming an order consumes its reservation at the store."""
        orders = [o for o in self.orders if o.kind == "ecom" and o.open_lines() and self._usable(o, cross_topic=True)
                  and len({o.lines[i].location for i in o.open_lines()}) == 1
                  and o.lines[o.open_lines()[0]].location in self.stores]
        if not orders:
            return []
        order = self.rng.choice(orders)
        line_ids = order.open_lines()
        store = order.lines[line_ids[0]].location
        lines = [self._pos_line(n, order.lines[i].sku, order.lines[i].quantity) for n, i in enumerate(line_ids, 1)]
        for i in line_ids:
            order.lines[i].open = False
        order.locked_phase = order.touched_phase = self.phase
        return [self._pos(store, "SALE", lines, order_id=order.order_id)]

    def _transfer(self) -> list[RawRecord]:
        if self.in_transit and self.rng.random() < 0.5:
            transfer_id, dest, sku, qty = self.in_transit.pop(0)
            return [self._wms(dest, "TRANSFER_IN", [self._wms_line(sku, qty)], reference=transfer_id,
                              transfer_id=transfer_id)]
        origin, dest, sku = self.rng.choice(self.dcs), self.rng.choice(self.stores), self.rng.choice(self.skus)
        transfer_id = self._id("TR")
        self.in_transit.append((transfer_id, dest, sku, self.case_pack(sku)))
        return [self._wms(origin, "TRANSFER_OUT", [self._wms_line(sku, 1, uom="CASE")], reference=transfer_id,
                          transfer_id=transfer_id, destination=dest)]

    def _receipt(self) -> list[RawRecord]:
        loc = self.rng.choice(self.locations)
        lines = []
        for sku in self.rng.sample(self.skus, self.rng.randint(1, 3)):
            if self.rng.random() < 0.3:
                lines.append(self._wms_line(sku, 1, uom="CASE", unit_cost=self.standard_cost(sku) * self.case_pack(sku)))
            else:
                lines.append(self._wms_line(sku, self.rng.randint(6, 18),
                                            unit_cost=self.standard_cost(sku) * Decimal(self.rng.choice(["0.9", "1", "1.1"]))))
        return [self._wms(loc, "RECEIPT", lines, reference=self._id("PO"))]

    def _adjustment(self) -> list[RawRecord]:
        loc = self.rng.choice(self.locations)
        sku = self.rng.choice(self.skus)
        reason = self.rng.choice(["SHRINK", "SHRINK", "FOUND", "DAMAGED"])
        return [self._wms(loc, "ADJUSTMENT", [self._wms_line(sku, self.rng.randint(1, 2), reason=reason)])]

    def _count_block(self, sku: str, store: str) -> list[RawRecord]:
        """A cycle count, then (same WMS partition) maybe a late movement and an older count."""
        at = self._tick()
        records = [self._wms(store, "CYCLE_COUNT", [self._wms_line(sku, 0, counted=self.rng.randint(15, 40))], at=at)]
        previous = self.counted.get((sku, store))
        self.counted[(sku, store)] = max(at, previous) if previous else at
        roll = self.rng.random()
        if roll < 0.35:
            reason = self.rng.choice(["SHRINK", "FOUND"])
            records.append(self._wms(store, "ADJUSTMENT", [self._wms_line(sku, 1, reason=reason)],
                                     at=at - timedelta(seconds=20)))
        elif roll < 0.55:
            records.append(self._wms(store, "RECEIPT", [self._wms_line(sku, 6, unit_cost=self.standard_cost(sku))],
                                     at=at - timedelta(seconds=25), reference=self._id("PO")))
        elif roll < 0.7:
            records.append(self._wms(store, "CYCLE_COUNT", [self._wms_line(sku, 0, counted=self.rng.randint(15, 40))],
                                     at=at - timedelta(seconds=60)))
        if self.rng.random() < 0.4:
            records.append(self._wms(store, "RECEIPT", [self._wms_line(sku, 12, unit_cost=self.standard_cost(sku))],
                                     reference=self._id("PO")))
        return records

    def _late_sale(self) -> list[RawRecord]:
        """A store sale that happened before a count of an earlier phase reaches the pipeline only now."""
        keys = [(sku, store) for (sku, store) in self.counted if self._free(sku, store)]
        if not keys:
            return []
        sku, store = self.rng.choice(sorted(keys))
        at = self.counted[(sku, store)] - timedelta(seconds=30)
        record = self._pos(store, "SALE", [self._pos_line(1, sku, 1)], at=at)
        self.sales.append((orjson.loads(record.value)["transaction_id"], store, sku, 1))
        return [record]

    def _day_close(self) -> list[RawRecord]:
        return [self._rec(POS, store, {
            "transaction_id": self._id(f"{store.rsplit('-', 1)[1]}-CLOSE"), "store_id": store, "register_id": None,
            "type": "DAY_CLOSE", "business_date": self.business_date, "occurred_at": _iso(self._tick()),
            "currency": "USD", "order_id": None, "lines": [], "tenders": []}) for store in self.stores]

    def _bad_record(self) -> RawRecord:
        kind = self.rng.choice(["MALFORMED_JSON", "SCHEMA_INVALID", "UNKNOWN_ITEM", "UNKNOWN_LOCATION",
                                "UNIT_OF_MEASURE"])
        store, sku = self.rng.choice(self.stores), self.rng.choice(self.skus)
        if kind == "MALFORMED_JSON":
            topic = self.rng.choice(RAW_TOPICS)
            garbage = self.rng.choice([b'{"event_id": "' + self._id("bad").encode() + b'", "lines": [',
                                       b"\x00\x9f\xffnot json at all", b"", b"[1, 2"])
            return self._rec(topic, store, garbage, bad=kind)
        if kind == "SCHEMA_INVALID":
            record = self._wms(store, "RECEIPT", [self._wms_line(sku, 3, unit_cost=Decimal("1"))])
            payload = orjson.loads(record.value)
            payload.pop("lines")
            return self._rec(WMS, store, payload, bad=kind)
        if kind == "UNKNOWN_ITEM":
            line = self._pos_line(1, sku, 1)
            line["sku"] = f"{self.namespace}-NOSUCH{self.rng.randint(1, 99)}"
            record = self._pos(store, "SALE", [line])
            return RawRecord(record.topic, record.key, record.value, self.phase, kind, self.namespace)
        if kind == "UNKNOWN_LOCATION":
            ghost = f"{self.namespace}-GHOST{self.rng.randint(1, 9)}"
            record = self._wms(ghost, "RECEIPT", [self._wms_line(sku, 3, unit_cost=Decimal("2"))])
            return RawRecord(record.topic, record.key, record.value, self.phase, kind, self.namespace)
        record = self._wms(store, "RECEIPT", [self._wms_line(sku, 1, uom="PALLET", unit_cost=Decimal("9"))])
        return RawRecord(record.topic, record.key, record.value, self.phase, kind, self.namespace)
