"""Configuration: documented defaults, and a wrong value fails at start naming its variable."""
from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError, parse_tokens


def test_defaults_are_the_documented_ones():
    s = Settings.from_env({})
    assert (s.kafka_bootstrap, s.topic_partitions, s.reservation_ttl, s.channel_publish_interval,
            s.dedupe_retention, s.processing_guarantee) == ("127.0.0.1:9092", 8, 259200, 1.0, 604800,
                                                           "at_least_once")


@pytest.mark.parametrize("name, value", [
    ("TOPIC_PARTITIONS", "eight"), ("TOPIC_PARTITIONS", "0"), ("WEB_PORT", "http"),
    ("RESERVATION_TTL", "-5"), ("CHANNEL_PUBLISH_INTERVAL", "soon"), ("PROCESSING_GUARANTEE", "maybe_once"),
    ("KAFKA_BOOTSTRAP", "localhost"), ("API_TOKENS", "abc=superuser"), ("PRODUCER_LINGER_MS", "-1"),
    ("KAFKA_GROUP_INSTANCE_ID", "worker 1"), ("KAFKA_GROUP_INSTANCE_ID", "w" * 241),
    ("FINANCE_LEDGER_CACHE_MB", "0"),
])
def test_a_wrong_value_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_tokens_parse_to_roles_and_the_error_never_shows_the_token():
    assert parse_tokens("t1=viewer, t2=admin") == {"t1": "viewer", "t2": "admin"}
    with pytest.raises(SettingsError) as error:
        parse_tokens("s3cr3t=root")
    assert "s3cr3t" not in str(error.value)


def test_sale_costs_are_kept_as_long_as_duplicates_are_recognised_unless_a_return_window_is_set():
    assert Settings.from_env({}).sale_cost_retention == 604800
    assert Settings.from_env({"DEDUPE_RETENTION": "86400"}).sale_cost_retention == 86400
    window = Settings.from_env({"DEDUPE_RETENTION": "86400", "SALE_COST_RETENTION": "7776000"})
    assert window.sale_cost_retention == 7776000


def test_late_postings_wait_a_minute_for_their_batch_by_default():
    assert Settings.from_env({}).late_batch_after == 60.0
    assert Settings.from_env({"LATE_BATCH_AFTER": "5"}).late_batch_after == 5.0


def test_the_finance_stage_keeps_about_a_thousand_busy_store_days_parsed_unless_told_otherwise():
    # ~100 KB a busy day (tables/day_ledgers.py): a worker holding 500 stores' today and yesterday.
    assert Settings.from_env({}).finance_ledger_cache_mb == 96
    assert Settings.from_env({"FINANCE_LEDGER_CACHE_MB": "256"}).finance_ledger_cache_mb == 256


def test_static_group_membership_is_off_unless_a_worker_is_given_an_identity():
    assert Settings.from_env({}).group_instance_id is None
    assert Settings.from_env({"KAFKA_GROUP_INSTANCE_ID": " stock-sync-1 "}).group_instance_id == "stock-sync-1"


def test_a_static_member_that_moves_to_another_address_joins_as_another_member():
    """A rejoining static member gets its old assignment, which Faust refuses for another URL."""
    from app.faust_app import group_instance_id

    def identity(**env: str) -> str | None:
        return group_instance_id(Settings.from_env(env))

    assert identity() is None
    same = identity(KAFKA_GROUP_INSTANCE_ID="w1", WEB_HOST="10.0.0.5", WEB_PORT="6066")
    assert same == identity(KAFKA_GROUP_INSTANCE_ID="w1", WEB_HOST="10.0.0.5", WEB_PORT="6066")
    assert same.startswith("w1-")
    assert same != identity(KAFKA_GROUP_INSTANCE_ID="w1", WEB_HOST="10.0.0.5", WEB_PORT="6067")
    assert same != identity(KAFKA_GROUP_INSTANCE_ID="w1", WEB_HOST="10.0.0.6", WEB_PORT="6066")
