"""Independent oracle: what the pipeline must end with, computed straight from the raw records produced.

It re-implements SPEC §3 (buckets, reservations, counts and the late rule, idempotency) and the
*kinds* of SPEC §5.2 postings in the plainest possible way, from the raw payloads, without importing
anything from `app/`. It does not compute costs or amounts: amounts depend on the order of receipts
across topics, which Kafka does not fix; kinds, buckets and the applied movements do not, for the
chaos workload (see tests/chaos/workload.py for why).

A movement is identified by (SKU@LOCATION, source system, source event id, movement type): the
chaos workload never repeats a SKU inside one source event, so this is unique and it is also
visible on every availability record (`cause`) the pipeline emits.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import orjson

SYSTEM_OF_TOPIC = {
    "pos.transactions": "pos", "ecom.orders": "ecom", "marketplace.orders": "marketplace",
    "oms.reservations": "oms", "wms.events": "wms", "returns.inspections": "inspections",
}
# Movements whose on_hand change a cycle count taken after them has already seen (SPEC §3, late rule).
DELTA_TYPES = {"SALE", "FULFIL", "RETURN", "RECEIPT", "TRANSFER_OUT", "TRANSFER_IN", "ADJUST", "DISPOSITION"}


@dataclass(frozen=True, order=True)
class MovementRef:
    key: str
    system: str
    event_id: str
    type: str

    def __str__(self) -> str:
        return f"{self.type} {self.system}:{self.event_id} @ {self.key}"

    @classmethod
    def of_availability(cls, key: str, cause: dict) -> MovementRef:
        """The movement an availability record (key SKU@LOCATION) was made by, from its `cause`."""
        return cls(key, cause["source_system"], cause["source_event_id"], cause["movement_type"])


@dataclass(frozen=True)
class RawInput:
    """A raw record as read back from its topic: where it sits, what it holds, its phase."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    phase: int
    bad: str | None = None


@dataclass
class ExpectedPosition:
    on_hand: int = 0
    reserved: int = 0
    quality_control: int = 0
    damaged: int = 0
    in_transit: int = 0
    version: int = 0
    last_count_at: datetime | None = None
    reservations: dict[tuple[str, str], int] = field(default_factory=dict)

    def buckets(self) -> dict[str, int]:
        return {"on_hand": self.on_hand, "reserved": self.reserved, "quality_control": self.quality_control,
                "damaged": self.damaged, "in_transit": self.in_transit}


@dataclass
class OracleResult:
    positions: dict[str, ExpectedPosition] = field(default_factory=dict)
    applied: dict[MovementRef, int] = field(default_factory=dict)         # ref -> phase applied in
    posting_kinds: dict[MovementRef, frozenset[str]] = field(default_factory=dict)
    # Kinds a movement may post or not, depending on a cross-topic order Kafka does not fix: an
    # inflow revalues the units that covered negative stock (COST_ADJUSTMENT) only if the sales that
    # took stock below zero reached the pipeline before it.
    optional_kinds: dict[MovementRef, frozenset[str]] = field(default_factory=dict)
    rejected_releases: dict[MovementRef, int] = field(default_factory=dict)  # UNKNOWN_RESERVATION, for good
    bad_records: list[RawInput] = field(default_factory=list)
    events_by_key: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    duplicates_in: int = 0  # good raw records that are byte-for-byte re-sends of an earlier one

    def versions(self) -> dict[str, int]:
        return {key: p.version for key, p in self.positions.items()}

    def expected_postings(self) -> frozenset[tuple[MovementRef, str]]:
        """(movement, kind) of every posting the pipeline must publish."""
        return _postings(self.posting_kinds)

    def optional_postings(self) -> frozenset[tuple[MovementRef, str]]:
        """(movement, kind) of the postings it may publish or not (`optional_kinds`)."""
        return _postings(self.optional_kinds)


def _postings(kinds_of: dict[MovementRef, frozenset[str]]) -> frozenset[tuple[MovementRef, str]]:
    return frozenset((ref, kind) for ref, kinds in kinds_of.items() for kind in kinds)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class Oracle:
    """Feed raw records in a per-key order the pipeline also sees; read `result` at the end."""

    def __init__(self, master_items: list[dict], master_locations: list[dict]) -> None:
        self.items = {item["sku"]: item for item in master_items}
        self.locations = {loc["location_id"]: loc for loc in master_locations}
        self.by_upc = {upc: item["sku"] for item in master_items for upc in item.get("upcs", [])}
        self.by_alias = {(mp, alias): item["sku"] for item in master_items
                         for mp, alias in item.get("marketplace_aliases", {}).items()}
        self.result = OracleResult()
        self._phase = 0
        self._seen: set[tuple[str, bytes]] = set()

    # --- feeding -------------------------------------------------------------------------------
    def feed_all(self, records: list[RawInput]) -> OracleResult:
        for record in records:
            self.feed(record)
        return self.result

    def feed(self, record: RawInput) -> None:
        self._phase = record.phase
        if record.bad:
            self.result.bad_records.append(record)
            return
        fingerprint = (record.topic, record.value)
        if fingerprint in self._seen:
            self.result.duplicates_in += 1
        self._seen.add(fingerprint)
        event = orjson.loads(record.value)
        getattr(self, f"_{SYSTEM_OF_TOPIC[record.topic]}")(event)

    # --- one movement --------------------------------------------------------------------------
    def _move(self, ref: MovementRef, occurred_at: datetime, effect, *, kinds: tuple[str, ...] = (),
              is_release_of: tuple[str, str] | None = None, late_kind: bool = True) -> None:
        position = self.result.positions.setdefault(ref.key, ExpectedPosition())
        self.result.events_by_key[ref.key].append(f"p{self._phase} {ref.type} {ref.system}:{ref.event_id}")
        if ref in self.result.applied or ref in self.result.rejected_releases:
            return  # a movement is decided once, whatever the re-sends: applied, or dead-lettered
        if is_release_of is not None and is_release_of not in position.reservations:
            self.result.rejected_releases[ref] = self._phase  # UNKNOWN_RESERVATION: dead-lettered, not applied
            return
        late = (ref.type in DELTA_TYPES and position.last_count_at is not None
                and occurred_at < position.last_count_at)
        on_hand_before = position.on_hand
        produced = set(kinds)
        extra = effect(position, late)
        if extra:
            produced |= set(extra)
        if late and position.on_hand != on_hand_before:
            raise AssertionError(f"oracle bug: late {ref} moved on_hand")
        position.version += 1
        self.result.applied[ref] = self._phase
        self.result.posting_kinds[ref] = frozenset(produced)
        if position.on_hand > on_hand_before:
            self.result.optional_kinds[ref] = frozenset({"COST_ADJUSTMENT"})

    @staticmethod
    def _on_hand(position: ExpectedPosition, late: bool, delta: int) -> list[str]:
        """Change on_hand unless a later count saw it; a kept-off change posts a count reversal."""
        if delta == 0:
            return []
        if late:
            return ["LATE_COUNT_REVERSAL"]
        position.on_hand += delta
        return []

    def _ref(self, sku: str, loc: str, system: str, event_id: str, mtype: str) -> MovementRef:
        return MovementRef(f"{sku}@{loc}", system, event_id, mtype)

    # --- sources -------------------------------------------------------------------------------
    def _pos(self, txn: dict) -> None:
        if txn["type"] == "DAY_CLOSE":
            return
        basket = _cents(sum((Decimal(ln["unit_price"]) * ln["quantity"] - Decimal(ln.get("discount") or "0")
                             + Decimal(ln.get("tax") or "0") for ln in txn["lines"]), Decimal("0")))
        tendered = _cents(sum((Decimal(t["amount"]) for t in txn["tenders"]), Decimal("0")))
        is_return = txn["type"] == "RETURN"
        tenders_ok = abs(basket) == abs(tendered) if is_return else basket == tendered
        occurred = _ts(txn["occurred_at"])
        store, order_id = txn["store_id"], txn.get("order_id")
        for line in txn["lines"]:
            sku = line.get("sku") or self.by_upc[line["upc"]]
            qty = line["quantity"]
            if is_return:
                def effect(p, late, qty=qty, inspect=line.get("inspection_required", False)):
                    if inspect:
                        p.quality_control += qty
                    return self._on_hand(p, late, qty)
                kinds = ("RETURN_REVENUE", "RETURN_COGS") if tenders_ok else ("RETURN_COGS",)
                self._move(self._ref(sku, store, "pos", txn["transaction_id"], "RETURN"), occurred, effect,
                           kinds=kinds)
                continue
            kinds = ("SALE_REVENUE", "COGS") if tenders_ok else ("COGS",)
            if order_id:
                def pickup(p, late, qty=qty, order_id=order_id):
                    remaining = qty
                    for rid in [r for r in p.reservations if r[0] == order_id]:
                        taken = min(p.reservations[rid], remaining)
                        p.reservations[rid] -= taken
                        p.reserved -= taken
                        remaining -= taken
                        if p.reservations[rid] == 0:
                            del p.reservations[rid]
                    return self._on_hand(p, late, -qty)
                self._move(self._ref(sku, store, "pos", txn["transaction_id"], "FULFIL"), occurred, pickup,
                           kinds=kinds)
            else:
                self._move(self._ref(sku, store, "pos", txn["transaction_id"], "SALE"), occurred,
                           lambda p, late, qty=qty: self._on_hand(p, late, -qty), kinds=kinds)

    def _order_line(self, system: str, event_id: str, action: str, order_id: str, line_id: str, sku: str,
                    loc: str, qty: int, occurred: datetime) -> None:
        rid = (order_id, line_id)
        if action == "RESERVE":
            def reserve(p, late):
                if rid not in p.reservations:
                    p.reservations[rid] = qty
                    p.reserved += qty
            self._move(self._ref(sku, loc, system, event_id, "RESERVE"), occurred, reserve)
        elif action == "RELEASE":
            def release(p, late):
                p.reserved -= p.reservations.pop(rid)
            self._move(self._ref(sku, loc, system, event_id, "RELEASE"), occurred, release, is_release_of=rid)
        else:
            def fulfil(p, late):
                taken = min(p.reservations.get(rid, 0), qty)
                if rid in p.reservations:
                    p.reservations[rid] -= taken
                    p.reserved -= taken
                    if p.reservations[rid] == 0:
                        del p.reservations[rid]
                return self._on_hand(p, late, -qty)
            self._move(self._ref(sku, loc, system, event_id, "FULFIL"), occurred, fulfil,
                       kinds=("SALE_REVENUE", "COGS"))

    def _ecom(self, order: dict) -> None:
        action = {"order_created": "RESERVE", "order_cancelled": "RELEASE", "order_fulfilled": "FULFIL"}[order["event"]]
        for line in order["lines"]:
            self._order_line("ecom", order["event_id"], action, order["order_id"], line["line_id"], line["sku"],
                             order["fulfillment_location"], line["quantity"], _ts(order["occurred_at"]))

    def _marketplace(self, order: dict) -> None:
        action = {"ACCEPTED": "RESERVE", "CANCELLED": "RELEASE", "SHIPPED": "FULFIL"}[order["status"]]
        for item in order["items"]:
            sku = self.by_alias[(order["marketplace"], item["seller_sku"])]
            self._order_line("marketplace", order["message_id"], action, order["order_id"], item["order_item_id"],
                             sku, order["ship_node"], item["qty"], _ts(order["occurred_at"]))

    def _oms(self, event: dict) -> None:
        occurred = _ts(event["occurred_at"])
        args = ("oms", event["event_id"])
        self._order_line(*args, "RELEASE", event["order_id"], event["line_id"], event["sku"],
                         event["from_location"], event["quantity"], occurred)
        if event["type"] == "reservation_reassigned":
            self._order_line(*args, "RESERVE", event["order_id"], event["line_id"], event["sku"],
                             event["to_location"], event["quantity"], occurred)

    def _wms(self, event: dict) -> None:
        loc, kind, event_id = event["location_id"], event["type"], event["event_id"]
        occurred = _ts(event["occurred_at"])
        for line in event["lines"]:
            sku = line["sku"]
            factor = self.items[sku]["case_pack"] if line.get("uom") == "CASE" else 1
            qty = line["quantity"] * factor
            if kind == "RECEIPT":
                self._move(self._ref(sku, loc, "wms", event_id, "RECEIPT"), occurred,
                           lambda p, late, qty=qty: self._on_hand(p, late, qty), kinds=("RECEIPT",))
            elif kind == "TRANSFER_OUT":
                origin = self._ref(sku, loc, "wms", event_id, "TRANSFER_OUT")
                first_time = origin not in self.result.applied
                self._move(origin, occurred, lambda p, late, qty=qty: self._on_hand(p, late, -qty),
                           kinds=("TRANSFER_OUT",))
                if first_time:
                    # The destination's in-transit leg: derived by the pipeline from the origin's movement.
                    def arrive(p, late, qty=qty):
                        p.in_transit += qty
                    self._move(self._ref(sku, event["destination_id"], "wms", event_id, "TRANSFER_OUT"),
                               occurred, arrive)
            elif kind == "TRANSFER_IN":
                def transfer_in(p, late, qty=qty):
                    p.in_transit -= qty
                    return self._on_hand(p, late, qty)
                self._move(self._ref(sku, loc, "wms", event_id, "TRANSFER_IN"), occurred, transfer_in,
                           kinds=("TRANSFER_IN",))
            elif kind == "CYCLE_COUNT":
                counted = line["counted_quantity"] * factor

                def count(p, late, counted=counted, occurred=occurred):
                    if p.last_count_at is not None and occurred < p.last_count_at:
                        return []  # an older count says nothing about today's shelf
                    difference = counted - p.on_hand
                    p.on_hand = counted
                    p.last_count_at = occurred
                    return ["COUNT_VARIANCE"] if difference else []
                self._move(self._ref(sku, loc, "wms", event_id, "COUNT"), occurred, count)
            elif kind == "ADJUSTMENT":
                reason = line["reason"]

                def adjust(p, late, qty=qty, reason=reason):
                    if reason == "DAMAGED":
                        p.damaged += qty  # still on the books: on_hand unchanged, nothing posted
                        return []
                    delta = qty if reason == "FOUND" else -qty
                    return ["SHRINK", *self._on_hand(p, late, delta)]
                self._move(self._ref(sku, loc, "wms", event_id, "ADJUST"), occurred, adjust)

    def _inspections(self, inspection: dict) -> None:
        loc, occurred = inspection["location_id"], _ts(inspection["occurred_at"])
        for line in inspection["lines"]:
            def dispose(p, late, qty=line["quantity"], disposition=line["disposition"]):
                # quality_control floors at 0 (SPEC §3): the workload inspects a return only a phase
                # after it, so in this workload the floor never cuts.
                p.quality_control = max(0, p.quality_control - qty)
                if disposition == "DAMAGED":
                    p.damaged += qty
                if disposition == "SCRAP":
                    return ["WRITE_OFF", *self._on_hand(p, late, -qty)]
                return []
            self._move(self._ref(line["sku"], loc, "inspections", inspection["inspection_id"], "DISPOSITION"),
                       occurred, dispose)


def master_from(records) -> tuple[list[dict], list[dict]]:
    """Item and location masters from produced master records (the last value per key wins)."""
    items: dict[str, dict] = {}
    locations: dict[str, dict] = {}
    for record in records:
        payload = orjson.loads(record.value)
        if record.topic == "master.items":
            items[payload["sku"]] = payload
        elif record.topic == "master.locations":
            locations[payload["location_id"]] = payload
    return list(items.values()), list(locations.values())
