"""The topic schemas: committed files match the models, and producers' events validate against them."""
from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from app import topics as t
from app.models.records import AvailabilityRecord, DeadLetter, DriftRecord, Posting, Published
from app.schemas import CONTRACT, SCHEMA_DIR, render, schema_for
from app.simulation.workload import Catalogue, RetailWorkload

# SPEC §2.1's samples, with one value chosen where the SPEC lists the alternatives.
SPEC_SAMPLES = [
    (t.POS, {"transaction_id": "S042-R3-000123", "store_id": "S042", "register_id": "R3", "type": "SALE",
             "business_date": "2026-11-27", "occurred_at": "2026-11-27T10:15:03Z", "currency": "USD",
             "order_id": None,
             "lines": [{"line_no": 1, "sku": "SKU-1001", "upc": None, "quantity": 2, "unit_price": "19.99",
                        "discount": "0.00", "tax": "3.20", "original_transaction_id": None,
                        "inspection_required": True}],
             "tenders": [{"type": "CARD", "amount": "43.18"}]}),
    (t.ECOM, {"event_id": "evt-77", "event": "order_created", "order_id": "W100045",
              "occurred_at": "2026-11-27T10:15:03Z", "currency": "USD", "fulfillment_location": "DC01",
              "lines": [{"line_id": "1", "sku": "SKU-1001", "quantity": 1, "unit_price": "19.99", "tax": "1.60"}]}),
    (t.MARKETPLACE, {"message_id": "m-1", "marketplace": "AMAZON", "status": "ACCEPTED", "order_id": "AMZ-113",
                     "occurred_at": "2026-11-27T10:15:03Z", "ship_node": "DC01", "currency": "USD",
                     "items": [{"order_item_id": "1", "seller_sku": "AMZ-1001", "qty": 1, "item_price": "21.99",
                                "item_tax": "1.76"}]}),
    (t.OMS, {"event_id": "oms-5", "type": "reservation_reassigned", "order_id": "W100045", "line_id": "1",
             "sku": "SKU-1001", "quantity": 1, "from_location": "DC01", "to_location": "S042",
             "occurred_at": "2026-11-27T10:15:03Z"}),
    (t.WMS, {"event_id": "wms-9", "location_id": "DC01", "type": "RECEIPT", "occurred_at": "2026-11-27T10:15:03Z",
             "reference": "PO-7781", "transfer_id": None, "destination_id": None,
             "lines": [{"sku": "SKU-1001", "quantity": 3, "uom": "CASE", "unit_cost": "7.10",
                        "counted_quantity": None, "reason": None}]}),
    (t.INSPECTIONS, {"inspection_id": "insp-3", "location_id": "S042", "occurred_at": "2026-11-27T10:15:03Z",
                     "lines": [{"sku": "SKU-1001", "quantity": 1, "disposition": "RESTOCK"}]}),
    (t.ERP_SNAPSHOTS, {"snapshot_id": "snap-1", "location_id": "S042", "as_of": "2026-11-27T23:00:00Z",
                       "balances": [{"sku": "SKU-1001", "on_hand": 12}]}),
]


def validator(topic: str) -> Draft202012Validator:
    schema = schema_for(topic)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("topic", [s.topic for s in CONTRACT])
def test_committed_schema_is_what_the_models_generate(topic):
    path = SCHEMA_DIR / f"{topic}.json"
    assert path.exists(), f"{path} missing: run `python -m app.cli schemas` and commit docs/schemas"
    assert path.read_text() == render(topic), f"{path} is stale: run `python -m app.cli schemas` and commit it"


def test_every_contract_topic_has_a_schema_and_no_stray_file_remains():
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == {f"{s.topic}.json" for s in CONTRACT}
    assert set(t.RAW_TOPICS) <= {s.topic for s in CONTRACT}


@pytest.mark.parametrize("topic,event", SPEC_SAMPLES, ids=[topic for topic, _ in SPEC_SAMPLES])
def test_spec_sample_events_are_valid(topic, event):
    validator(topic).validate(event)


def test_every_simulated_producer_event_is_valid():
    catalogue = Catalogue(n_skus=30, n_stores=2)
    workload = RetailWorkload(catalogue=catalogue, seed=11)
    events = [*catalogue.master_events(), *workload.opening_stock(), *workload.events(600), *workload.day_close()]
    validators = {}
    for topic, _key, payload in events:
        validators.setdefault(topic, validator(topic)).validate(payload)
    assert set(t.RAW_TOPICS) <= set(validators)


def test_money_as_a_float_is_refused():
    topic, sale = SPEC_SAMPLES[0]
    bad = json.loads(json.dumps(sale))
    bad["lines"][0]["unit_price"] = 19.99
    errors = list(validator(topic).iter_errors(bad))
    assert errors and "19.99 is not of type 'string'" in errors[0].message


def test_a_missing_required_field_is_refused():
    topic, sale = SPEC_SAMPLES[0]
    bad = {k: v for k, v in sale.items() if k != "store_id"}
    assert any("'store_id' is a required property" in e.message for e in validator(topic).iter_errors(bad))


def test_output_records_carry_schema_version_one_from_one_base():
    for model in (AvailabilityRecord, DeadLetter, DriftRecord, Posting):
        assert issubclass(model, Published)
        assert model.model_fields["schema_version"].default == 1
    assert "schema_version" in schema_for(t.AVAILABILITY)["properties"]
