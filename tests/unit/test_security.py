"""SPEC §10 and §7: Kafka TLS/SASL settings, replication and audit retention, the hardened web surface."""
from __future__ import annotations

import json
import ssl

import faust
import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import HTTPRequestEntityTooLarge
from faust.web import View

from app import topics as t
from app.broker import make_certificates
from app.connection import KafkaConnection, client_kwargs, faust_credentials
from app.faust_app import app, settings, web_ssl_context
from app.models.records import AuditEntry
from app.settings import Settings, SettingsError
from app.web import audit
from app.web.auth import ADMIN, Principal
from app.web.http import guarded

SCRAM = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
         "KAFKA_SASL_USERNAME": "stock-sync", "KAFKA_SASL_PASSWORD": "pw-123456"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    make_certificates(directory, "keystore-pw")
    return directory


# --- settings --------------------------------------------------------------------------------------

def test_defaults_are_plaintext_one_replica_audit_kept_forever_and_1_mib_bodies():
    s = Settings.from_env({})
    assert s.kafka == KafkaConnection("127.0.0.1:9092")
    assert (s.topic_replication, s.audit_retention_ms, s.web_max_body, s.web_tls_cert) == (1, -1, 1 << 20, None)
    assert client_kwargs(s.kafka) == {"bootstrap_servers": "127.0.0.1:9092"}   # the fast path is unchanged
    assert faust_credentials(s.kafka) is None


def test_sasl_ssl_scram_gives_aiokafka_kwargs_and_faust_credentials(certs):
    s = Settings.from_env({**SCRAM, "KAFKA_BOOTSTRAP": "k1:9093,k2:9093", "KAFKA_SSL_CAFILE": str(certs / "ca.pem")})
    kwargs = client_kwargs(s.kafka)
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("stock-sync", "pw-123456")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED and kwargs["ssl_context"].check_hostname
    credentials = faust_credentials(s.kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is kwargs["ssl_context"]   # one context shared by every client
    assert "pw-123456" not in repr(s.kafka)


def test_ssl_with_client_certificate_gives_faust_ssl_credentials(certs):
    s = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(certs / "ca.pem"),
                           "KAFKA_SSL_CERTFILE": str(certs / "broker.pem"), "KAFKA_SSL_KEYFILE": str(certs / "broker.key")})
    assert client_kwargs(s.kafka)["security_protocol"] == "SSL" and "sasl_mechanism" not in client_kwargs(s.kafka)
    assert isinstance(faust_credentials(s.kafka), faust.SSLCredentials)


def test_sasl_plaintext_has_no_tls():
    s = Settings.from_env({**SCRAM, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"})
    assert "ssl_context" not in client_kwargs(s.kafka)
    assert faust_credentials(s.kafka).protocol.value == "SASL_PLAINTEXT"


def test_password_file_is_read_without_its_trailing_newline(tmp_path):
    secret = tmp_path / "kafka-password"
    secret.write_text("from-a-file\n")
    env = {**SCRAM, "KAFKA_SASL_PASSWORD": "", "KAFKA_SASL_PASSWORD_FILE": str(secret)}
    assert Settings.from_env(env).kafka.sasl_password == "from-a-file"


@pytest.mark.parametrize("change, names", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SASL_MECHANISM": ""}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SASL_USERNAME": ""}, "KAFKA_SASL_USERNAME"),
    ({"KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SASL_PASSWORD_FILE": "/nonexistent/secret"}, "not both"),
    ({"KAFKA_SASL_PASSWORD": "", "KAFKA_SASL_PASSWORD_FILE": "/nonexistent/secret"}, "KAFKA_SASL_PASSWORD_FILE"),
    ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SSL_CAFILE": "/etc/hostname"}, "does not use TLS"),
    ({"TOPIC_REPLICATION": "0"}, "TOPIC_REPLICATION"),
    ({"AUDIT_RETENTION_MS": "0"}, "AUDIT_RETENTION_MS"),
    ({"AUDIT_RETENTION_MS": "-2"}, "AUDIT_RETENTION_MS"),
    ({"WEB_MAX_BODY": "10"}, "WEB_MAX_BODY"),
    ({"WEB_TLS_CERT": "/etc/hostname"}, "WEB_TLS_KEY"),
])
def test_a_wrong_security_setting_names_its_variable(change, names):
    with pytest.raises(SettingsError, match=names) as error:
        Settings.from_env({**SCRAM, **change})
    assert "pw-123456" not in str(error.value)


# --- topics ----------------------------------------------------------------------------------------

def test_three_replicas_require_two_in_sync_and_one_replica_sets_nothing():
    spec = next(s for s in t.TOPIC_SPECS if s.name == t.AVAILABILITY)
    assert t.topic_config(spec, replication=3) == {"min.insync.replicas": "2"}
    assert t.topic_config(spec) == {}


def test_audit_trail_topics_keep_the_configured_retention_others_their_own():
    by_name = {s.name: s for s in t.TOPIC_SPECS}
    trail = {t.MOVEMENTS, t.POSTINGS, t.JOURNAL_BATCHES, t.FINANCE_EXCEPTIONS}
    assert {s.name for s in t.TOPIC_SPECS if s.audit_trail} == trail
    for name in trail:
        assert t.topic_config(by_name[name])["retention.ms"] == "-1"
        assert t.topic_config(by_name[name], audit_retention_ms=86_400_000)["retention.ms"] == "86400000"
    assert t.topic_config(by_name[t.DLQ], audit_retention_ms=5)["retention.ms"] == str(30 * t.DAY)


def test_faust_declares_topics_and_changelogs_with_the_replication_setting():
    assert app.conf.topic_replication_factor == settings.topic_replication
    assert app.conf.broker_credentials is None   # PLAINTEXT by default


# --- web -------------------------------------------------------------------------------------------

def test_faust_own_views_are_not_served():
    served = {prefix for prefix, _ in app.web.blueprints._enabled}
    assert not {"/table", "/router", "/graph", "/performance"} & served
    assert all("stats" not in str(bp) for _, bp in app.web.blueprints._enabled)
    assert app.conf.web_application_options["client_max_size"] == settings.web_max_body


def test_https_context_from_web_tls_settings(certs):
    s = Settings.from_env({"WEB_TLS_CERT": str(certs / "broker.pem"), "WEB_TLS_KEY": str(certs / "broker.key")})
    context = web_ssl_context(s)
    assert isinstance(context, ssl.SSLContext) and context.protocol == ssl.PROTOCOL_TLS_SERVER
    assert web_ssl_context(Settings.from_env({})) is None


class Admin(View):
    ran = 0

    @guarded(ADMIN)
    async def post(self, request, what: str = ""):
        if what == "read-huge":
            raise HTTPRequestEntityTooLarge(max_size=1024, actual_size=2048)
        if what == "audit-down":
            raise audit.AuditUnavailable("a1")
        Admin.ran += 1
        return self.bytes(b"{}", content_type="application/json")


@pytest.fixture()
def admin_view(monkeypatch):
    from app.web import http
    monkeypatch.setattr(http, "settings", type(settings)(api_tokens={"adm": ADMIN}, web_max_body=1024))
    return Admin(app, app.web)


def _post(length: int | None = None):
    headers = {"Authorization": "Bearer adm", **({"Content-Length": str(length)} if length is not None else {})}
    return make_mocked_request("POST", "/v1/dlq/replay", headers=headers)


async def test_a_declared_body_over_the_limit_is_413_json_and_the_view_does_not_run(admin_view):
    Admin.ran = 0
    response = await admin_view.post(_post(2 * 1024 * 1024))
    assert response.status == 413 and response.content_type == "application/json"
    assert json.loads(response.body)["error"] == "BODY_TOO_LARGE" and Admin.ran == 0
    assert (await admin_view.post(_post(100))).status == 200 and Admin.ran == 1


async def test_a_body_cut_while_read_is_413_not_500(admin_view):
    response = await admin_view.post(_post(), what="read-huge")
    assert response.status == 413 and json.loads(response.body)["limit"] == 1024


async def test_audit_that_cannot_be_written_is_503(admin_view):
    response = await admin_view.post(_post(), what="audit-down")
    assert response.status == 503 and json.loads(response.body)["error"] == "AUDIT_UNAVAILABLE"


class _BrokenTopic:
    async def send(self, **_):
        raise RuntimeError("broker down")


class _Topic:
    def __init__(self):
        self.sent = []

    async def send(self, **kw):
        self.sent.append(kw)


def _entry() -> AuditEntry:
    return audit.audit_entry(Principal(ADMIN, "fp"), "dlq.replay", {}, "started")


async def test_required_audit_entry_written_nowhere_refuses(tmp_path):
    unwritable = tmp_path / "a-file" / "audit.log"
    (tmp_path / "a-file").write_text("")   # a file where the directory should be
    with pytest.raises(audit.AuditUnavailable):
        await audit.record(_entry(), unwritable, _BrokenTopic(), required=True)
    await audit.record(_entry(), unwritable, _BrokenTopic())   # a closing entry only logs


async def test_one_audit_destination_is_enough(tmp_path):
    topic = _Topic()
    await audit.record(_entry(), tmp_path / "x" / "y" / "audit.log", topic, required=True)
    (tmp_path / "blocked").write_text("")
    await audit.record(_entry(), tmp_path / "blocked" / "audit.log", topic, required=True)
    assert len(topic.sent) == 2
    await audit.record(_entry(), tmp_path / "ok.log", _BrokenTopic(), required=True)
    assert (tmp_path / "ok.log").read_bytes().count(b"\n") == 1
