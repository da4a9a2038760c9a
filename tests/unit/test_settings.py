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
