"""Retail workload generator: stores, DCs, web and a marketplace trading one catalogue.

Pure and seeded: it yields (topic, key, payload) tuples in each producer's native shape, so the
same generator feeds `make run`, the end-to-end tests, the chaos suite and the benchmarks.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from app import topics as t

Event = tuple[str, str, dict]


@dataclass
class Catalogue:
    n_skus: int = 200
    n_stores: int = 4
    n_dcs: int = 1
    marketplace: str = "AMAZON"

    def skus(self) -> list[str]:
        return [f"SKU-{i:05d}" for i in range(1, self.n_skus + 1)]

    def stores(self) -> list[str]:
        return [f"S{i:03d}" for i in range(1, self.n_stores + 1)]

    def dcs(self) -> list[str]:
        return [f"DC{i:02d}" for i in range(1, self.n_dcs + 1)]

    def alias(self, sku: str) -> str:
        return "AMZ-" + sku.split("-")[1]

    def upc(self, sku: str) -> str:
        return "0" + sku.split("-")[1].rjust(11, "0")

    def standard_cost(self, sku: str) -> Decimal:
        return Decimal(3 + (int(sku.split("-")[1]) % 40)) + Decimal("0.25")

    def price(self, sku: str) -> Decimal:
        return (self.standard_cost(sku) * Decimal("2.2")).quantize(Decimal("0.01"))

    def master_events(self) -> list[Event]:
        events: list[Event] = []
        for sku in self.skus():
            events.append((t.MASTER_ITEMS, sku, {
                "sku": sku, "description": f"Item {sku}", "upcs": [self.upc(sku)],
                "marketplace_aliases": {self.marketplace: self.alias(sku)}, "case_pack": 12,
                "standard_cost": str(self.standard_cost(sku)), "active": True}))
        for store in self.stores():
            events.append((t.MASTER_LOCATIONS, store, {
                "location_id": store, "type": "STORE", "legal_entity": "US01", "currency": "USD",
                "channels": ["store", "web"], "safety_stock": 1}))
        for dc in self.dcs():
            events.append((t.MASTER_LOCATIONS, dc, {
                "location_id": dc, "type": "DC", "legal_entity": "US01", "currency": "USD",
                "channels": ["web", self.marketplace.lower()], "safety_stock": 0}))
        return events


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class RetailWorkload:
    """Generates a plausible interleaving of every channel's events, with follow-ups kept coherent."""

    catalogue: Catalogue = field(default_factory=Catalogue)
    seed: int = 7
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    duplicate_rate: float = 0.0  # share of events a producer re-sends
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = min(self.start, self.now())
        self.seq = 0
        self.open_orders: list[tuple[str, str, str, str, int]] = []  # (kind, order_id, loc, sku, qty)
        self.in_transit: list[tuple[str, str, str, int]] = []        # (transfer_id, dest, sku, qty)
        self.to_inspect: list[tuple[str, str, int]] = []              # (store, sku, qty)
        self.sales: list[tuple[str, str, int]] = []                   # (transaction_id, sku, qty)
        self.recent: list[Event] = []

    def _id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.seed}-{self.seq:08d}"

    def _tick(self) -> str:
        # Events are generated faster than their simulated spacing, so the clock would run ahead of
        # the wall clock (minutes into the future after a while) and stamp events that have not
        # happened yet: it never passes now (and never goes back). A start in the past still
        # advances by the simulated spacing, so seeded runs there stay reproducible.
        step = timedelta(milliseconds=self.rng.randint(5, 200))
        self.clock = max(self.clock, min(self.clock + step, self.now()))
        return iso(self.clock)

    @property
    def business_date(self) -> date:
        return self.clock.date()

    def opening_stock(self, units: int = 40) -> Iterator[Event]:
        """A receipt of every SKU at every location, so the day starts with stock on the shelves."""
        c = self.catalogue
        for loc in c.dcs() + c.stores():
            skus = c.skus()
            for i in range(0, len(skus), 50):
                yield self._receipt(loc, skus[i:i + 50], units)

    def _receipt(self, loc: str, skus: list[str], units: int) -> Event:
        c = self.catalogue
        lines = [{"sku": s, "quantity": units, "uom": "EACH",
                  "unit_cost": str((c.standard_cost(s) * Decimal(self.rng.choice(["0.95", "1.00", "1.05"])))
                                   .quantize(Decimal("0.01"))), "counted_quantity": None, "reason": None}
                 for s in skus]
        return (t.WMS, loc, {"event_id": self._id("wms"), "location_id": loc, "type": "RECEIPT",
                             "occurred_at": self._tick(), "reference": self._id("PO"), "transfer_id": None,
                             "destination_id": None, "lines": lines})

    def events(self, count: int) -> Iterator[Event]:
        for _ in range(count):
            event = self._next()
            yield event
            if self.duplicate_rate and self.rng.random() < self.duplicate_rate:
                yield event  # the producer retried: same payload, same ids

    def _next(self) -> Event:
        r = self.rng.random()
        if r < 0.40:
            return self._pos_sale()
        if r < 0.50:
            return self._ecom()
        if r < 0.58:
            return self._marketplace()
        if r < 0.63 and self.sales:
            return self._pos_return()
        if r < 0.68 and self.to_inspect:
            return self._inspection()
        if r < 0.74:
            return self._transfer()
        if r < 0.80:
            return self._receipt(self.rng.choice(self.catalogue.dcs() + self.catalogue.stores()),
                                 self.rng.sample(self.catalogue.skus(), min(3, self.catalogue.n_skus)), 12)
        if r < 0.84:
            return self._adjustment()
        if r < 0.86:
            return self._count()
        if r < 0.89 and any(o[0] == "ecom" for o in self.open_orders):
            return self._oms_reassign()
        return self._pos_sale()

    def _pos_sale(self) -> Event:
        c = self.catalogue
        store = self.rng.choice(c.stores())
        txn = self._id(f"{store}-R1")
        lines, gross = [], Decimal("0")
        for n, sku in enumerate(self.rng.sample(c.skus(), min(self.rng.randint(1, 3), c.n_skus)), start=1):
            qty = self.rng.randint(1, 2)
            price = c.price(sku)
            tax = (price * qty * Decimal("0.08")).quantize(Decimal("0.01"))
            lines.append({"line_no": n, "sku": sku, "upc": None, "quantity": qty, "unit_price": str(price),
                          "discount": "0.00", "tax": str(tax), "original_transaction_id": None,
                          "inspection_required": False})
            gross += price * qty + tax
            self.sales.append((txn, sku, qty))
        return (t.POS, store, {"transaction_id": txn, "store_id": store, "register_id": "R1", "type": "SALE",
                               "business_date": self.business_date.isoformat(), "occurred_at": self._tick(),
                               "currency": "USD", "order_id": None, "lines": lines,
                               "tenders": [{"type": "CARD", "amount": str(gross)}]})

    def _pos_return(self) -> Event:
        c = self.catalogue
        original, sku, qty = self.sales.pop(self.rng.randrange(len(self.sales)))
        store = self.rng.choice(c.stores())
        price = c.price(sku)
        tax = (price * qty * Decimal("0.08")).quantize(Decimal("0.01"))
        inspect = self.rng.random() < 0.5
        if inspect:
            self.to_inspect.append((store, sku, qty))
        return (t.POS, store, {
            "transaction_id": self._id(f"{store}-R2"), "store_id": store, "register_id": "R2", "type": "RETURN",
            "business_date": self.business_date.isoformat(), "occurred_at": self._tick(), "currency": "USD",
            "order_id": None,
            "lines": [{"line_no": 1, "sku": sku, "upc": None, "quantity": qty, "unit_price": str(price),
                       "discount": "0.00", "tax": str(tax), "original_transaction_id": original,
                       "inspection_required": inspect}],
            "tenders": [{"type": "CARD", "amount": str(-(price * qty + tax))}]})

    def _inspection(self) -> Event:
        store, sku, qty = self.to_inspect.pop(0)
        return (t.INSPECTIONS, store, {
            "inspection_id": self._id("insp"), "location_id": store, "occurred_at": self._tick(),
            "lines": [{"sku": sku, "quantity": qty,
                       "disposition": self.rng.choice(["RESTOCK", "RESTOCK", "DAMAGED", "SCRAP"])}]})

    def _ecom(self) -> Event:
        c = self.catalogue
        pending = [o for o in self.open_orders if o[0] == "ecom"]
        if pending and self.rng.random() < 0.6:
            order = pending[0]
            self.open_orders.remove(order)
            _, order_id, loc, sku, qty = order
            event = "order_fulfilled" if self.rng.random() < 0.85 else "order_cancelled"
        else:
            order_id, loc = self._id("W"), self.rng.choice(c.dcs() + c.stores())
            sku, qty, event = self.rng.choice(c.skus()), self.rng.randint(1, 2), "order_created"
            self.open_orders.append(("ecom", order_id, loc, sku, qty))
        price = c.price(sku)
        return (t.ECOM, order_id, {
            "event_id": self._id("evt"), "event": event, "order_id": order_id, "occurred_at": self._tick(),
            "currency": "USD", "fulfillment_location": loc,
            "lines": [{"line_id": "1", "sku": sku, "quantity": qty, "unit_price": str(price),
                       "tax": str((price * qty * Decimal("0.08")).quantize(Decimal("0.01")))}]})

    def _marketplace(self) -> Event:
        c = self.catalogue
        pending = [o for o in self.open_orders if o[0] == "mp"]
        if pending and self.rng.random() < 0.6:
            order = pending[0]
            self.open_orders.remove(order)
            _, order_id, loc, sku, qty = order
            status = "SHIPPED" if self.rng.random() < 0.9 else "CANCELLED"
        else:
            order_id, loc = self._id("AMZ"), self.rng.choice(c.dcs())
            sku, qty, status = self.rng.choice(c.skus()), 1, "ACCEPTED"
            self.open_orders.append(("mp", order_id, loc, sku, qty))
        price = c.price(sku) + Decimal("2.00")
        return (t.MARKETPLACE, order_id, {
            "message_id": self._id("m"), "marketplace": c.marketplace, "status": status, "order_id": order_id,
            "occurred_at": self._tick(), "ship_node": loc, "currency": "USD",
            "items": [{"order_item_id": "1", "seller_sku": c.alias(sku), "qty": qty, "item_price": str(price),
                       "item_tax": str((price * qty * Decimal("0.08")).quantize(Decimal("0.01")))}]})

    def _oms_reassign(self) -> Event:
        c = self.catalogue
        order = next(o for o in self.open_orders if o[0] == "ecom")
        self.open_orders.remove(order)
        _, order_id, loc, sku, qty = order
        target = self.rng.choice([x for x in c.stores() + c.dcs() if x != loc] or [loc])
        self.open_orders.append(("ecom", order_id, target, sku, qty))
        return (t.OMS, order_id, {
            "event_id": self._id("oms"), "type": "reservation_reassigned", "order_id": order_id, "line_id": "1",
            "sku": sku, "quantity": qty, "from_location": loc, "to_location": target, "occurred_at": self._tick()})

    def _transfer(self) -> Event:
        c = self.catalogue
        if self.in_transit and self.rng.random() < 0.5:
            transfer_id, dest, sku, qty = self.in_transit.pop(0)
            return (t.WMS, dest, {
                "event_id": self._id("wms"), "location_id": dest, "type": "TRANSFER_IN",
                "occurred_at": self._tick(), "reference": transfer_id, "transfer_id": transfer_id,
                "destination_id": None,
                "lines": [{"sku": sku, "quantity": qty, "uom": "EACH", "unit_cost": None,
                           "counted_quantity": None, "reason": None}]})
        origin, dest = self.rng.choice(c.dcs()), self.rng.choice(c.stores())
        sku, cases = self.rng.choice(c.skus()), 1
        transfer_id = self._id("TR")
        self.in_transit.append((transfer_id, dest, sku, cases * 12))
        return (t.WMS, origin, {
            "event_id": self._id("wms"), "location_id": origin, "type": "TRANSFER_OUT",
            "occurred_at": self._tick(), "reference": transfer_id, "transfer_id": transfer_id,
            "destination_id": dest,
            "lines": [{"sku": sku, "quantity": cases, "uom": "CASE", "unit_cost": None,
                       "counted_quantity": None, "reason": None}]})

    def _adjustment(self) -> Event:
        c = self.catalogue
        loc = self.rng.choice(c.stores() + c.dcs())
        return (t.WMS, loc, {
            "event_id": self._id("wms"), "location_id": loc, "type": "ADJUSTMENT", "occurred_at": self._tick(),
            "reference": None, "transfer_id": None, "destination_id": None,
            "lines": [{"sku": self.rng.choice(c.skus()), "quantity": 1, "uom": "EACH", "unit_cost": None,
                       "counted_quantity": None, "reason": self.rng.choice(["SHRINK", "SHRINK", "FOUND", "DAMAGED"])}]})

    def _count(self) -> Event:
        c = self.catalogue
        loc = self.rng.choice(c.stores())
        return (t.WMS, loc, {
            "event_id": self._id("wms"), "location_id": loc, "type": "CYCLE_COUNT", "occurred_at": self._tick(),
            "reference": None, "transfer_id": None, "destination_id": None,
            "lines": [{"sku": self.rng.choice(c.skus()), "quantity": 0, "uom": "EACH", "unit_cost": None,
                       "counted_quantity": self.rng.randint(20, 45), "reason": None}]})

    def day_close(self) -> list[Event]:
        return [(t.POS, store, {
            "transaction_id": self._id(f"{store}-CLOSE"), "store_id": store, "register_id": None,
            "type": "DAY_CLOSE", "business_date": self.business_date.isoformat(), "occurred_at": self._tick(),
            "currency": "USD", "order_id": None, "lines": [], "tenders": []})
            for store in self.catalogue.stores()]
