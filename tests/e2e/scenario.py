"""Builders of raw channel payloads for e2e scenarios, each scenario in its own SKU/location namespace."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app import topics as t


class Scenario:
    """Names and payloads for one test: unique SKUs and locations so tests share a broker safely."""

    def __init__(self, name: str) -> None:
        self.name = name.upper()
        self.t0 = datetime.now(UTC).replace(microsecond=0)
        self._n = 0

    def sku(self, n: int = 1) -> str:
        return f"{self.name}-SKU{n}"

    def loc(self, code: str) -> str:
        return f"{self.name}-{code}"

    def at(self, seconds: float) -> str:
        return (self.t0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def id(self, prefix: str) -> str:
        self._n += 1
        return f"{self.name}-{prefix}-{self._n}"

    def item(self, n: int = 1, *, case_pack: int = 12, standard_cost: str = "7.00", upc: str | None = None,
             alias: str | None = None) -> tuple[str, str, dict]:
        sku = self.sku(n)
        return (t.MASTER_ITEMS, sku, {"sku": sku, "description": sku, "upcs": [upc] if upc else [],
                                      "marketplace_aliases": {"AMAZON": alias} if alias else {},
                                      "case_pack": case_pack, "standard_cost": standard_cost, "active": True})

    def location(self, code: str, *, kind: str = "STORE", channels: tuple[str, ...] = ("store", "web"),
                 safety_stock: int = 0, legal_entity: str = "US01") -> tuple[str, str, dict]:
        loc = self.loc(code)
        return (t.MASTER_LOCATIONS, loc, {"location_id": loc, "type": kind, "legal_entity": legal_entity,
                                          "currency": "USD", "channels": list(channels),
                                          "safety_stock": safety_stock})

    def receipt(self, loc: str, lines: list[tuple[str, int, str]], at: float = 0, uom: str = "EACH",
                event_id: str | None = None) -> tuple[str, str, dict]:
        return (t.WMS, loc, {"event_id": event_id or self.id("rcpt"), "location_id": loc, "type": "RECEIPT",
                             "occurred_at": self.at(at), "reference": self.id("PO"), "transfer_id": None,
                             "destination_id": None,
                             "lines": [{"sku": s, "quantity": q, "uom": uom, "unit_cost": c,
                                        "counted_quantity": None, "reason": None} for s, q, c in lines]})

    def wms(self, loc: str, kind: str, lines: list[dict], at: float = 0, **fields) -> tuple[str, str, dict]:
        full_lines = [{"uom": "EACH", "unit_cost": None, "counted_quantity": None, "reason": None,
                       "quantity": 0, **line} for line in lines]
        return (t.WMS, loc, {"event_id": fields.pop("event_id", None) or self.id("wms"), "location_id": loc,
                             "type": kind, "occurred_at": self.at(at), "reference": fields.pop("reference", None),
                             "transfer_id": fields.pop("transfer_id", None),
                             "destination_id": fields.pop("destination_id", None), "lines": full_lines})

    def pos(self, store: str, kind: str, lines: list[dict], at: float = 0, *, order_id: str | None = None,
            tenders: list[dict] | None = None, transaction_id: str | None = None,
            business_date: str | None = None) -> tuple[str, str, dict]:
        from decimal import Decimal
        full = []
        gross = Decimal("0")
        for n, line in enumerate(lines, start=1):
            row = {"line_no": n, "upc": None, "discount": "0.00", "tax": "0.00",
                   "original_transaction_id": None, "inspection_required": False, **line}
            gross += Decimal(row["unit_price"]) * row["quantity"] - Decimal(row["discount"]) + Decimal(row["tax"])
            full.append(row)
        if tenders is None:
            tenders = [{"type": "CARD", "amount": str(-gross if kind == "RETURN" else gross)}]
        return (t.POS, store, {"transaction_id": transaction_id or self.id(f"{store}-TX"), "store_id": store,
                               "register_id": "R1", "type": kind,
                               "business_date": business_date or self.t0.date().isoformat(),
                               "occurred_at": self.at(at), "currency": "USD", "order_id": order_id,
                               "lines": full, "tenders": tenders})

    def ecom(self, event: str, order_id: str, loc: str, lines: list[dict], at: float = 0,
             event_id: str | None = None) -> tuple[str, str, dict]:
        full = [{"line_id": str(n), "unit_price": "10.00", "tax": "0.80", **line} for n, line in enumerate(lines, 1)]
        return (t.ECOM, order_id, {"event_id": event_id or self.id("evt"), "event": event, "order_id": order_id,
                                   "occurred_at": self.at(at), "currency": "USD", "fulfillment_location": loc,
                                   "lines": full})

    def marketplace(self, status: str, order_id: str, node: str, items: list[dict], at: float = 0):
        full = [{"order_item_id": str(n), "item_price": "21.99", "item_tax": "1.76", **it}
                for n, it in enumerate(items, 1)]
        return (t.MARKETPLACE, order_id, {"message_id": self.id("m"), "marketplace": "AMAZON", "status": status,
                                          "order_id": order_id, "occurred_at": self.at(at), "ship_node": node,
                                          "currency": "USD", "items": full})

    def oms(self, kind: str, order_id: str, line_id: str, sku: str, qty: int, from_loc: str,
            to_loc: str | None = None, at: float = 0):
        return (t.OMS, order_id, {"event_id": self.id("oms"), "type": kind, "order_id": order_id,
                                  "line_id": line_id, "sku": sku, "quantity": qty, "from_location": from_loc,
                                  "to_location": to_loc, "occurred_at": self.at(at)})

    def inspection(self, loc: str, lines: list[tuple[str, int, str]], at: float = 0):
        return (t.INSPECTIONS, loc, {"inspection_id": self.id("insp"), "location_id": loc,
                                     "occurred_at": self.at(at),
                                     "lines": [{"sku": s, "quantity": q, "disposition": d} for s, q, d in lines]})
