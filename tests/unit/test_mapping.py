"""Raw channel records → canonical movements (SPEC §2.1, §3); bad input → a DLQ reason (SPEC §4)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from app.domain.master import InMemoryMasterData
from app.domain.sources import SOURCES, Mapped, MappingContext, map_raw
from app.models.canonical import Channel, MovementType, Role, SourceSystem
from app.models.raw import LocationType
from app.models.records import ErrorCode, FinanceExceptionCode, Rejection
from tests.factories import make_item, make_location

AT = "2026-11-27T10:15:03Z"
OCCURRED = datetime(2026, 11, 27, 10, 15, 3, tzinfo=timezone.utc)
TTL = timedelta(hours=72)
MASTER = InMemoryMasterData(
    items=[
        make_item(),  # SKU-1001: UPC 012345678905, AMAZON alias AMZ-1001, case_pack 12
        make_item(sku="SKU-2002", upcs=[], marketplace_aliases={"AMAZON": "AMZ-2002"}, case_pack=None),
    ],
    locations=[
        make_location(),  # S042, a store
        make_location(location_id="DC01", type=LocationType.DC, channels=["web", "amazon"]),
    ],
)
CTX = MappingContext(master=MASTER, reservation_ttl=TTL, now=OCCURRED + timedelta(seconds=1))

POS, ECOM, MARKETPLACE, OMS, WMS, INSPECTIONS = (
    "pos.transactions", "ecom.orders", "marketplace.orders", "oms.reservations", "wms.events",
    "returns.inspections",
)


def map_(topic: str, payload: dict[str, Any] | bytes) -> Mapped | Rejection:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return map_raw(SOURCES[topic], raw, CTX)


def mapped(topic: str, payload: dict[str, Any]) -> Mapped:
    result = map_(topic, payload)
    assert isinstance(result, Mapped), result
    return result


def rejected(topic: str, payload: dict[str, Any] | bytes) -> Rejection:
    result = map_(topic, payload)
    assert isinstance(result, Rejection), result
    return result


# --- raw payloads as each producer sends them --------------------------------------------------------

def pos_line(**overrides: Any) -> dict[str, Any]:
    return {"line_no": 1, "sku": "SKU-1001", "upc": None, "quantity": 2, "unit_price": "19.99",
            "discount": "0.00", "tax": "3.20", "original_transaction_id": None, "inspection_required": False,
            **overrides}


def pos_txn(**overrides: Any) -> dict[str, Any]:
    """A sale of 2 x SKU-1001 and 1 x SKU-2002 at S042, tendered exactly."""
    txn = {"transaction_id": "S042-R3-000123", "store_id": "S042", "register_id": "R3", "type": "SALE",
           "business_date": "2026-11-27", "occurred_at": AT, "currency": "USD", "order_id": None,
           "lines": [pos_line(), pos_line(line_no=2, sku="SKU-2002", quantity=1, unit_price="5.00",
                                          discount="0.50", tax="0.36")]}
    txn.update(overrides)
    if "tenders" not in overrides:
        txn["tenders"] = [{"type": "CARD", "amount": str(_basket(txn["lines"]))}]
    return txn


def _basket(lines: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(ln["unit_price"]) * ln["quantity"] - Decimal(ln.get("discount", "0"))
                + Decimal(ln.get("tax", "0")) for ln in lines), Decimal("0"))


def ecom_order(**overrides: Any) -> dict[str, Any]:
    return {"event_id": "evt-77", "event": "order_created", "order_id": "W100045", "occurred_at": AT,
            "currency": "USD", "fulfillment_location": "DC01",
            "lines": [
                {"line_id": "1", "sku": "SKU-1001", "quantity": 1, "unit_price": "19.99", "tax": "1.60"},
                {"line_id": "2", "sku": "SKU-2002", "quantity": 3, "unit_price": "5.00", "tax": "1.20"}],
            **overrides}


def marketplace_order(**overrides: Any) -> dict[str, Any]:
    return {"message_id": "m-1", "marketplace": "AMAZON", "status": "ACCEPTED", "order_id": "AMZ-113",
            "occurred_at": AT, "ship_node": "DC01", "currency": "USD",
            "items": [{"order_item_id": "1", "seller_sku": "AMZ-1001", "qty": 1, "item_price": "21.99",
                       "item_tax": "1.76"},
                      {"order_item_id": "2", "seller_sku": "AMZ-2002", "qty": 2, "item_price": "4.00",
                       "item_tax": "0.32"}],
            **overrides}


def oms_event(**overrides: Any) -> dict[str, Any]:
    return {"event_id": "oms-5", "type": "reservation_reassigned", "order_id": "W100045", "line_id": "1",
            "sku": "SKU-1001", "quantity": 1, "from_location": "DC01", "to_location": "S042",
            "occurred_at": AT,
            **overrides}


def wms_line(**overrides: Any) -> dict[str, Any]:
    return {"sku": "SKU-1001", "quantity": 3, "uom": "EACH", "unit_cost": "7.10", "counted_quantity": None,
            "reason": None, **overrides}


def wms_event(type_: str = "RECEIPT", lines: list[dict[str, Any]] | None = None,
              **overrides: Any) -> dict[str, Any]:
    return {"event_id": "wms-9", "location_id": "DC01", "type": type_, "occurred_at": AT,
            "reference": "PO-7781",
            "transfer_id": None, "destination_id": None, "lines": lines or [wms_line()], **overrides}


def inspection(**overrides: Any) -> dict[str, Any]:
    return {"inspection_id": "insp-3", "location_id": "S042", "occurred_at": AT,
            "lines": [{"sku": "SKU-1001", "quantity": 1, "disposition": "RESTOCK"},
                      {"sku": "SKU-2002", "quantity": 2, "disposition": "DAMAGED"},
                      {"sku": "SKU-1001", "quantity": 1, "disposition": "SCRAP"}],
            **overrides}


# --- POS -------------------------------------------------------------------------------------------

def test_pos_sale_maps_each_line_to_a_sale_at_the_store():
    result = mapped(POS, pos_txn())

    assert result.source_system is SourceSystem.POS and result.source_event_id == "S042-R3-000123"
    first, second = result.movements
    assert [m.movement_type for m in result.movements] == [MovementType.SALE, MovementType.SALE]
    assert (first.sku, first.quantity, first.location_id) == ("SKU-1001", 2, "S042")
    assert (second.sku, second.quantity, second.location_id) == ("SKU-2002", 1, "S042")
    assert first.movement_id == "pos:S042-R3-000123:1:line"
    assert second.movement_id == "pos:S042-R3-000123:2:line"
    assert all(m.correlation_id == "S042-R3-000123" for m in result.movements)
    assert first.business_date == date(2026, 11, 27) and first.occurred_at == OCCURRED
    assert first.channel is Channel.STORE
    assert (first.unit_price, first.discount, first.tax) == (
        Decimal("19.99"), Decimal("0.00"), Decimal("3.20"))
    assert not any(m.revenue_on_hold for m in result.movements)
    assert result.finance_exceptions == []


def test_pos_sale_reports_what_the_register_sold_for_the_day_batch_controls():
    totals = mapped(POS, pos_txn()).pos_totals

    assert totals is not None
    assert totals.location_id == "S042" and totals.business_date == date(2026, 11, 27)
    assert totals.transaction_id == "S042-R3-000123"
    assert totals.units_sold == 3
    assert totals.gross == Decimal("48.04")  # 19.99 x 2 + 3.20, and 5.00 - 0.50 + 0.36


def test_pos_line_named_by_upc_maps_to_its_sku():
    result = mapped(POS, pos_txn(lines=[pos_line(sku=None, upc="012345678905")]))

    assert [m.sku for m in result.movements] == ["SKU-1001"]


def test_pos_line_with_unknown_upc_is_unknown_item():
    rejection = rejected(POS, pos_txn(lines=[pos_line(sku=None, upc="999999999999")]))

    assert rejection.error_code is ErrorCode.UNKNOWN_ITEM
    assert rejection.source_event_id == "S042-R3-000123"


def test_pos_line_naming_neither_sku_nor_upc_is_schema_invalid():
    rejection = rejected(POS, pos_txn(lines=[pos_line(sku=None, upc=None)]))

    assert rejection.error_code is ErrorCode.SCHEMA_INVALID


def test_pos_sale_with_order_id_is_a_pickup_that_fulfils_the_order():
    result = mapped(POS, pos_txn(order_id="W100045"))

    assert [m.movement_type for m in result.movements] == [MovementType.FULFIL, MovementType.FULFIL]
    assert all(m.order_id == "W100045" and m.order_line_id is None for m in result.movements)
    assert all(m.correlation_id == "W100045" for m in result.movements)
    assert all(m.location_id == "S042" for m in result.movements)


def test_pos_return_maps_to_returns_linked_to_the_original_sale():
    lines = [pos_line(original_transaction_id="S042-R1-000001", inspection_required=True),
             pos_line(line_no=2, sku="SKU-2002", quantity=1, original_transaction_id="S042-R1-000001")]
    result = mapped(POS, pos_txn(transaction_id="S042-R3-000200", type="RETURN", lines=lines))

    first, second = result.movements
    assert first.movement_type is MovementType.RETURN and second.movement_type is MovementType.RETURN
    assert first.inspection_required and not second.inspection_required
    assert first.original_transaction_id == "S042-R1-000001"
    assert first.correlation_id == "S042-R1-000001"
    assert first.movement_id != second.movement_id
    assert result.pos_totals is None


def test_pos_day_close_closes_the_stores_day_without_movements():
    close = pos_txn(transaction_id="S042-CLOSE-20261127", type="DAY_CLOSE", lines=[], tenders=[])

    result = mapped(POS, close)

    assert result.movements == []
    assert result.pos_totals is None
    assert result.day_close is not None
    assert result.day_close.location_id == "S042"
    assert result.day_close.business_date == date(2026, 11, 27)
    assert result.day_close.transaction_id == "S042-CLOSE-20261127"


def test_pos_sale_whose_tenders_do_not_pay_the_lines_raises_a_finance_exception_and_holds_revenue():
    result = mapped(POS, pos_txn(tenders=[{"type": "CARD", "amount": "40.00"}]))

    [exception] = result.finance_exceptions
    assert exception.reason_code is FinanceExceptionCode.TENDER_MISMATCH
    assert exception.source_event_id == "S042-R3-000123"
    # Stock still moves: the movements are there, their revenue is held back.
    assert len(result.movements) == 2
    assert all(m.revenue_on_hold for m in result.movements)


def test_pos_at_unknown_store_is_unknown_location():
    rejection = rejected(POS, pos_txn(store_id="S999"))

    assert rejection.error_code is ErrorCode.UNKNOWN_LOCATION
    assert rejection.source_event_id == "S042-R3-000123"


def test_pos_sale_of_unknown_sku_is_unknown_item():
    rejection = rejected(POS, pos_txn(lines=[pos_line(sku="SKU-0000")]))

    assert rejection.error_code is ErrorCode.UNKNOWN_ITEM


# --- Ecommerce -------------------------------------------------------------------------------------

def test_ecom_order_created_reserves_each_line_until_the_ttl():
    result = mapped(ECOM, ecom_order())

    first, second = result.movements
    assert [m.movement_type for m in result.movements] == [MovementType.RESERVE, MovementType.RESERVE]
    assert (first.sku, first.quantity, first.location_id) == ("SKU-1001", 1, "DC01")
    assert (second.sku, second.quantity) == ("SKU-2002", 3)
    assert (first.order_id, first.order_line_id) == ("W100045", "1")
    assert second.order_line_id == "2"
    assert all(m.expires_at == OCCURRED + TTL for m in result.movements)
    assert all(m.correlation_id == "W100045" and m.channel is Channel.WEB for m in result.movements)
    assert (first.movement_id, second.movement_id) == ("ecom:evt-77:1:line", "ecom:evt-77:2:line")


def test_ecom_order_cancelled_releases_the_lines_it_names():
    second_line_only = ecom_order()["lines"][1:]

    result = mapped(ECOM, ecom_order(event_id="evt-78", event="order_cancelled", lines=second_line_only))

    [cancel] = result.movements
    assert cancel.movement_type is MovementType.RELEASE
    assert (cancel.order_id, cancel.order_line_id, cancel.location_id) == ("W100045", "2", "DC01")
    assert cancel.expires_at is None


def test_ecom_order_fulfilled_fulfils_each_line_with_its_price_and_tax():
    result = mapped(ECOM, ecom_order(event_id="evt-79", event="order_fulfilled"))

    first, second = result.movements
    assert first.movement_type is MovementType.FULFIL and second.movement_type is MovementType.FULFIL
    assert (first.unit_price, first.tax) == (Decimal("19.99"), Decimal("1.60"))
    assert (first.order_id, first.order_line_id) == ("W100045", "1")
    created = mapped(ECOM, ecom_order()).movements[0]
    assert first.movement_id != created.movement_id  # each event of the order line is its own movement


def test_ecom_order_at_unknown_fulfillment_location_is_unknown_location():
    rejection = rejected(ECOM, ecom_order(fulfillment_location="DC99"))

    assert rejection.error_code is ErrorCode.UNKNOWN_LOCATION
    assert rejection.source_event_id == "evt-77"


def test_ecom_order_of_unknown_sku_is_unknown_item():
    lines = [{"line_id": "1", "sku": "SKU-0000", "quantity": 1}]

    assert rejected(ECOM, ecom_order(lines=lines)).error_code is ErrorCode.UNKNOWN_ITEM


# --- Marketplace -----------------------------------------------------------------------------------

def test_marketplace_accepted_reserves_the_skus_behind_the_seller_aliases():
    result = mapped(MARKETPLACE, marketplace_order())

    first, second = result.movements
    assert [m.movement_type for m in result.movements] == [MovementType.RESERVE, MovementType.RESERVE]
    assert (first.sku, first.quantity, first.location_id) == ("SKU-1001", 1, "DC01")
    assert (second.sku, second.quantity) == ("SKU-2002", 2)
    assert (first.order_id, first.order_line_id) == ("AMZ-113", "1")
    assert all(m.expires_at == OCCURRED + TTL for m in result.movements)
    assert all(m.channel is Channel.MARKETPLACE and m.correlation_id == "AMZ-113" for m in result.movements)
    assert (first.movement_id, second.movement_id) == ("marketplace:m-1:1:line", "marketplace:m-1:2:line")


def test_marketplace_shipped_fulfils_with_the_item_price_and_tax():
    [shipped, _] = mapped(MARKETPLACE, marketplace_order(message_id="m-2", status="SHIPPED")).movements

    assert shipped.movement_type is MovementType.FULFIL
    assert (shipped.unit_price, shipped.tax) == (Decimal("21.99"), Decimal("1.76"))


def test_marketplace_cancelled_releases_the_items():
    result = mapped(MARKETPLACE, marketplace_order(message_id="m-3", status="CANCELLED"))

    assert [m.movement_type for m in result.movements] == [MovementType.RELEASE, MovementType.RELEASE]


def test_marketplace_name_is_matched_whatever_its_case():
    assert mapped(MARKETPLACE, marketplace_order(marketplace="amazon")).movements[0].sku == "SKU-1001"


@pytest.mark.parametrize(("marketplace", "seller_sku"), [("AMAZON", "AMZ-9999"), ("EBAY", "AMZ-1001")])
def test_marketplace_seller_sku_that_is_no_alias_of_that_marketplace_is_unknown_item(marketplace, seller_sku):
    items = [{"order_item_id": "1", "seller_sku": seller_sku, "qty": 1}]

    rejection = rejected(MARKETPLACE, marketplace_order(marketplace=marketplace, items=items))

    assert rejection.error_code is ErrorCode.UNKNOWN_ITEM
    assert rejection.source_event_id == "m-1"


def test_marketplace_order_at_unknown_ship_node_is_unknown_location():
    assert rejected(MARKETPLACE, marketplace_order(ship_node="DC99")).error_code is ErrorCode.UNKNOWN_LOCATION


# --- OMS -------------------------------------------------------------------------------------------

def test_oms_reassigned_releases_at_the_old_location_and_reserves_at_the_new_one():
    result = mapped(OMS, oms_event())

    release, reserve = result.movements
    assert (release.movement_type, release.role, release.location_id) == (
        MovementType.RELEASE, Role.FROM, "DC01")
    assert (reserve.movement_type, reserve.role, reserve.location_id) == (
        MovementType.RESERVE, Role.TO, "S042")
    for m in (release, reserve):
        assert (m.sku, m.quantity, m.order_id, m.order_line_id) == ("SKU-1001", 1, "W100045", "1")
        assert m.correlation_id == "W100045"
    assert reserve.expires_at == OCCURRED + TTL
    assert (release.movement_id, reserve.movement_id) == ("oms:oms-5:1:from", "oms:oms-5:1:to")


def test_oms_released_releases_the_line_at_its_location():
    released = oms_event(event_id="oms-6", type="reservation_released", to_location=None)

    [release] = mapped(OMS, released).movements

    assert release.movement_type is MovementType.RELEASE
    assert (release.location_id, release.order_id, release.order_line_id) == ("DC01", "W100045", "1")


@pytest.mark.parametrize("field", ["from_location", "to_location"])
def test_oms_reassignment_naming_an_unknown_location_is_unknown_location(field):
    rejection = rejected(OMS, oms_event(**{field: "X99"}))

    assert rejection.error_code is ErrorCode.UNKNOWN_LOCATION
    assert rejection.source_event_id == "oms-5"


def test_oms_reassignment_without_a_new_location_is_schema_invalid():
    assert rejected(OMS, oms_event(to_location=None)).error_code is ErrorCode.SCHEMA_INVALID


# --- WMS -------------------------------------------------------------------------------------------

def test_wms_receipt_maps_each_line_to_a_receipt_at_its_cost():
    lines = [wms_line(), wms_line(sku="SKU-2002", quantity=5, unit_cost="2.50")]

    result = mapped(WMS, wms_event(lines=lines))

    first, second = result.movements
    assert [m.movement_type for m in result.movements] == [MovementType.RECEIPT, MovementType.RECEIPT]
    assert (first.sku, first.quantity, first.location_id) == ("SKU-1001", 3, "DC01")
    assert first.unit_cost == Decimal("7.10")
    assert (second.sku, second.quantity, second.unit_cost) == ("SKU-2002", 5, Decimal("2.50"))
    assert (first.movement_id, second.movement_id) == ("wms:wms-9:1:line", "wms:wms-9:2:line")
    assert all(m.correlation_id == "PO-7781" for m in result.movements)


def test_wms_case_quantity_is_converted_to_eaches_with_cost_per_each():
    [line] = mapped(WMS, wms_event(lines=[wms_line(quantity=2, uom="CASE", unit_cost="85.20")])).movements

    assert line.quantity == 24
    assert line.unit_cost == Decimal("7.10")


def test_wms_case_of_an_item_without_case_pack_is_unit_of_measure():
    rejection = rejected(WMS, wms_event(lines=[wms_line(sku="SKU-2002", uom="CASE")]))

    assert rejection.error_code is ErrorCode.UNIT_OF_MEASURE
    assert rejection.source_event_id == "wms-9"


def test_wms_unknown_unit_of_measure_is_unit_of_measure():
    assert rejected(WMS, wms_event(lines=[wms_line(uom="PALLET")])).error_code is ErrorCode.UNIT_OF_MEASURE


def test_wms_transfer_out_ships_from_the_origin_towards_the_destination():
    result = mapped(WMS, wms_event("TRANSFER_OUT", reference="TO-55", transfer_id="T-55",
                                   destination_id="S042", lines=[wms_line(unit_cost=None)]))

    [shipment] = result.movements
    assert shipment.movement_type is MovementType.TRANSFER_OUT and shipment.role is Role.ORIGIN
    assert (shipment.location_id, shipment.counterparty_location) == ("DC01", "S042")
    assert shipment.transfer_id == "T-55" and shipment.correlation_id == "T-55"
    assert shipment.movement_id == "wms:wms-9:1:origin"


def test_wms_transfer_in_receives_against_the_transfer():
    arrived = wms_event("TRANSFER_IN", event_id="wms-10", location_id="S042", transfer_id="T-55",
                        lines=[wms_line(unit_cost=None)])

    [arrival] = mapped(WMS, arrived).movements

    assert arrival.movement_type is MovementType.TRANSFER_IN
    assert (arrival.location_id, arrival.quantity, arrival.transfer_id) == ("S042", 3, "T-55")


def test_wms_transfer_to_unknown_destination_is_unknown_location():
    rejection = rejected(WMS, wms_event("TRANSFER_OUT", transfer_id="T-55", destination_id="S999"))

    assert rejection.error_code is ErrorCode.UNKNOWN_LOCATION


def test_wms_transfer_out_without_destination_is_schema_invalid():
    assert rejected(WMS, wms_event("TRANSFER_OUT", transfer_id="T-55")).error_code is ErrorCode.SCHEMA_INVALID


def test_wms_cycle_count_carries_the_counted_quantity_in_eaches():
    lines = [wms_line(quantity=0, unit_cost=None, counted_quantity=0),
             wms_line(sku="SKU-1001", quantity=0, uom="CASE", unit_cost=None, counted_quantity=2)]

    first, second = mapped(WMS, wms_event("CYCLE_COUNT", reference="CC-1", lines=lines)).movements

    assert first.movement_type is MovementType.COUNT
    assert first.quantity == 0
    assert second.quantity == 24


def test_wms_cycle_count_line_without_counted_quantity_is_schema_invalid():
    assert rejected(WMS, wms_event("CYCLE_COUNT", lines=[wms_line()])).error_code is ErrorCode.SCHEMA_INVALID


@pytest.mark.parametrize("reason", ["DAMAGED", "SHRINK", "FOUND"])
def test_wms_adjustment_carries_its_reason(reason):
    [adjustment] = mapped(WMS, wms_event("ADJUSTMENT", lines=[wms_line(reason=reason)])).movements

    assert adjustment.movement_type is MovementType.ADJUST
    assert (adjustment.reason, adjustment.quantity) == (reason, 3)


@pytest.mark.parametrize("reason", [None, "STOLEN"])
def test_wms_adjustment_without_a_known_reason_is_schema_invalid(reason):
    rejection = rejected(WMS, wms_event("ADJUSTMENT", lines=[wms_line(reason=reason)]))

    assert rejection.error_code is ErrorCode.SCHEMA_INVALID


def test_wms_event_at_unknown_location_is_unknown_location():
    assert rejected(WMS, wms_event(location_id="DC99")).error_code is ErrorCode.UNKNOWN_LOCATION


def test_wms_line_of_unknown_sku_is_unknown_item():
    assert rejected(WMS, wms_event(lines=[wms_line(sku="SKU-0000")])).error_code is ErrorCode.UNKNOWN_ITEM


# --- Returns inspections ---------------------------------------------------------------------------

def test_inspection_maps_each_line_to_a_disposition():
    result = mapped(INSPECTIONS, inspection())

    assert [(m.movement_type, m.sku, m.quantity, m.reason) for m in result.movements] == [
        (MovementType.DISPOSITION, "SKU-1001", 1, "RESTOCK"),
        (MovementType.DISPOSITION, "SKU-2002", 2, "DAMAGED"),
        (MovementType.DISPOSITION, "SKU-1001", 1, "SCRAP"),
    ]
    assert all(m.location_id == "S042" and m.correlation_id == "insp-3" for m in result.movements)
    assert len({m.movement_id for m in result.movements}) == 3


def test_inspection_with_unknown_disposition_is_schema_invalid():
    lines = [{"sku": "SKU-1001", "quantity": 1, "disposition": "RESELL"}]

    rejection = rejected(INSPECTIONS, inspection(lines=lines))

    assert rejection.error_code is ErrorCode.SCHEMA_INVALID
    assert rejection.source_event_id == "insp-3"


def test_inspection_at_unknown_location_is_unknown_location():
    assert rejected(INSPECTIONS, inspection(location_id="S999")).error_code is ErrorCode.UNKNOWN_LOCATION


# --- Every source: identity and bad input ----------------------------------------------------------

VALID = {POS: pos_txn(), ECOM: ecom_order(), MARKETPLACE: marketplace_order(), OMS: oms_event(),
         WMS: wms_event(), INSPECTIONS: inspection()}
EVENT_ID = {POS: ("transaction_id", "S042-R3-000123"), ECOM: ("event_id", "evt-77"),
            MARKETPLACE: ("message_id", "m-1"), OMS: ("event_id", "oms-5"), WMS: ("event_id", "wms-9"),
            INSPECTIONS: ("inspection_id", "insp-3")}
# One required field per source, and one field given the wrong type.
REQUIRED = {POS: "type", ECOM: "order_id", MARKETPLACE: "status", OMS: "sku", WMS: "lines",
            INSPECTIONS: "occurred_at"}
WRONG_TYPE = {POS: ("lines", [pos_line(quantity="two")]), ECOM: ("occurred_at", "yesterday"),
              MARKETPLACE: ("items", "AMZ-1001"), OMS: ("quantity", "one"),
              WMS: ("lines", [wms_line(quantity=-3)]), INSPECTIONS: ("lines", [{"sku": "SKU-1001"}])}


@pytest.mark.parametrize("topic", VALID)
def test_a_resent_record_maps_to_the_same_distinct_movement_ids(topic):
    first, again = mapped(topic, VALID[topic]), mapped(topic, VALID[topic])

    ids = [m.movement_id for m in first.movements]
    assert ids == [m.movement_id for m in again.movements]
    assert len(set(ids)) == len(ids) > 0
    field, value = EVENT_ID[topic]
    assert first.source_event_id == value
    assert all(m.source_event_id == value and m.occurred_at == OCCURRED for m in first.movements)


@pytest.mark.parametrize("topic", VALID)
def test_malformed_json_is_malformed_json(topic):
    for raw in (b'{"transaction_id": "S042-R3', b"\xff\xfe", b""):
        rejection = rejected(topic, raw)
        assert rejection.error_code is ErrorCode.MALFORMED_JSON
        assert rejection.source_event_id is None


@pytest.mark.parametrize("topic", VALID)
def test_json_that_is_not_an_object_is_schema_invalid(topic):
    assert rejected(topic, b'[{"sku": "SKU-1001"}]').error_code is ErrorCode.SCHEMA_INVALID


@pytest.mark.parametrize("topic", VALID)
def test_missing_required_field_is_schema_invalid_and_keeps_the_event_id(topic):
    payload = {k: v for k, v in VALID[topic].items() if k != REQUIRED[topic]}

    rejection = rejected(topic, payload)

    assert rejection.error_code is ErrorCode.SCHEMA_INVALID
    assert rejection.source_event_id == EVENT_ID[topic][1]
    assert REQUIRED[topic] in rejection.error_detail


@pytest.mark.parametrize("topic", VALID)
def test_field_of_the_wrong_type_is_schema_invalid_and_keeps_the_event_id(topic):
    field, value = WRONG_TYPE[topic]

    rejection = rejected(topic, {**VALID[topic], field: value})

    assert rejection.error_code is ErrorCode.SCHEMA_INVALID
    assert rejection.source_event_id == EVENT_ID[topic][1]
    assert field in rejection.error_detail


@pytest.mark.parametrize("topic", VALID)
def test_record_without_its_event_id_is_schema_invalid_without_one(topic):
    field, _ = EVENT_ID[topic]
    payload = {k: v for k, v in VALID[topic].items() if k != field}

    rejection = rejected(topic, payload)

    assert rejection.error_code is ErrorCode.SCHEMA_INVALID
    assert rejection.source_event_id is None


@pytest.mark.parametrize("topic", VALID)
def test_timestamp_without_offset_is_read_as_utc(topic):
    # SPEC §2: times are UTC. A producer that leaves the offset off must not yield naive times that
    # cannot be compared with the aware ones already in a position (last count, reservation expiry).
    result = mapped(topic, {**VALID[topic], "occurred_at": "2026-11-27T10:15:03"})

    assert all(m.occurred_at == OCCURRED for m in result.movements)
    assert all(m.expires_at is None or m.expires_at == OCCURRED + TTL for m in result.movements)


# --- Every line counts (SPEC §3): repeated line ids ----------------------------------------------

def test_pos_lines_with_the_same_line_no_are_distinct_movements_and_postings():
    from app.domain.postings import posting_id
    from app.models.records import PostingKind

    txn = pos_txn(lines=[pos_line(), pos_line(quantity=1), pos_line(line_no=2, quantity=4)])
    movements = mapped(POS, txn).movements
    ids = [m.movement_id for m in movements]
    # the first occurrence keeps the id a well-formed event would have; the repeat gets ~2
    assert ids == ["pos:S042-R3-000123:1:line", "pos:S042-R3-000123:1~2:line", "pos:S042-R3-000123:2:line"]
    assert [m.quantity for m in movements] == [2, 1, 4]
    assert len({posting_id(i, PostingKind.COGS) for i in ids}) == 3
    # a resend of the whole event maps to the same ids
    assert [m.movement_id for m in mapped(POS, txn).movements] == ids


def test_order_lines_with_the_same_line_id_reserve_separately():
    order = ecom_order(lines=[{"line_id": "1", "sku": "SKU-1001", "quantity": 1, "unit_price": "1", "tax": "0"},
                              {"line_id": "1", "sku": "SKU-1001", "quantity": 2, "unit_price": "1", "tax": "0"}])
    movements = mapped(ECOM, order).movements
    assert [(m.movement_id, m.order_line_id, m.quantity) for m in movements] == [
        ("ecom:evt-77:1:line", "1", 1), ("ecom:evt-77:1~2:line", "1~2", 2)]
    items = marketplace_order()["items"]
    market = mapped(MARKETPLACE, marketplace_order(items=[items[0], items[0]])).movements
    assert [m.order_line_id for m in market] == ["1", "1~2"]


# --- WMS: damaged stock leaving the books, transfers closing --------------------------------------

@pytest.mark.parametrize("reason", ["WRITE_OFF", "REPAIRED"])
def test_wms_adjustment_accepts_write_off_and_repaired(reason):
    [movement] = mapped(WMS, wms_event("ADJUSTMENT", [wms_line(reason=reason, unit_cost=None)])).movements
    assert (movement.movement_type, movement.reason, movement.quantity) == (MovementType.ADJUST, reason, 3)


def test_wms_transfer_close_maps_each_named_sku_to_a_close_at_the_destination():
    event = wms_event("TRANSFER_CLOSE", [wms_line(quantity=0, unit_cost=None), wms_line(sku="SKU-2002", quantity=0,
                                                                                          unit_cost=None)],
                      location_id="S042", transfer_id="T-9")
    movements = mapped(WMS, event).movements
    assert [(m.movement_type, m.sku, m.location_id, m.transfer_id, m.quantity) for m in movements] == [
        (MovementType.TRANSFER_CLOSE, "SKU-1001", "S042", "T-9", 0),
        (MovementType.TRANSFER_CLOSE, "SKU-2002", "S042", "T-9", 0)]
