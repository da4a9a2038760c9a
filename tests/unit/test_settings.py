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
