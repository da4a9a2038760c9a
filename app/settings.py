"""All configuration, from environment variables, validated once at start (SPEC §8)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from app.models.limits import Limits
from app.connection import KafkaConnection, connection_from_env

REPO_ROOT = Path(__file__).resolve().parent.parent
GUARANTEES = ("at_least_once", "exactly_once")


class SettingsError(ValueError):
    """A configuration variable has a wrong value; the message names the variable."""


def _number(env: dict[str, str], name: str, default: float, minimum: float, kind: type) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    return int(_number(env, name, default, minimum, int))


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    return _number(env, name, default, minimum, float)


def parse_tokens(raw: str) -> dict[str, str]:
    """`token=role,token=role` → {token: role}; roles are viewer or admin."""
    tokens: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        token, sep, role = pair.partition("=")
        if not sep or not token or role not in ("viewer", "admin"):
            raise SettingsError(f"API_TOKENS entries must be token=viewer or token=admin, got {pair.split('=')[-1]!r} "
                                "(token hidden)")
        tokens[token] = role
    return tokens


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    app_id: str = "retail-stock-sync"
    topic_partitions: int = 8
    data_dir: Path = REPO_ROOT / ".run" / "worker"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    processing_guarantee: str = "at_least_once"
    reservation_ttl: int = 259200
    channel_publish_interval: float = 1.0
    dedupe_retention: int = 604800
    api_tokens: dict[str, str] = field(default_factory=dict)
    day_close_grace: float = 5.0
    expiry_sweep_interval: float = 30.0
    # How long a return can name its sale and be valued at the sale's cost (the `sale-costs` table
    # forgets older sales; their returns are valued at the average cost). DEDUPE_RETENTION unless set:
    # a retailer with a 90-day return window sets 7776000.
    sale_cost_retention: int = 604800
    chart_overrides: str = ""
    log_json: bool = False
    rocksdb_cache_mb: int = 32
    # The finance stage's parsed day ledgers kept between batches: how to size it, tables/day_ledgers.py.
    finance_ledger_cache_mb: int = 96
    session_timeout: float = 15.0
    # A graceful stop that has not finished by then exits the process (app/stop_deadline.py).
    stop_timeout: float = 20.0
    group_instance_id: str | None = None
    replay_window: int = 600
    producer_linger_ms: int = 25
    fetch_max_wait_ms: int = 50   # app/kafka_transport.py: 50 for latency under steady load, 200 drains faster
    fetch_min_bytes: int = 1      # app/kafka_transport.py: more saves CPU in a trickle, costs drain and idle latency
    audit_log: Path | None = None
    # The ERP (SPEC §9). The poster stage runs when ERP_ENABLED and ERP_URL is set (`make run` starts
    # a local Tryton and sets it); without ERP_URL, batches wait on their topic.
    erp_enabled: bool = True
    erp_url: str = ""
    erp_database: str = "stocksync"
    erp_user: str = "admin"
    erp_password: str = "admin"
    erp_max_rps: float = 5.0
    erp_timeout: float = 10.0
    day_close_after: float = 7200.0
    # Postings of an already closed day wait this long after the first of them and go out together
    # in one late batch (SPEC §5.3), so a stream of late postings is not one ERP entry per posting.
    late_batch_after: float = 60.0
    limits: Limits = field(default_factory=Limits)
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    topic_replication: int = 1
    audit_retention_ms: int = -1
    web_max_body: int = 1 << 20
    web_tls_cert: Path | None = None
    web_tls_key: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        guarantee = env.get("PROCESSING_GUARANTEE", "at_least_once")
        if guarantee not in GUARANTEES:
            raise SettingsError(f"PROCESSING_GUARANTEE must be one of {GUARANTEES}, got {guarantee!r}")
        bootstrap = env.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092").strip()
        if not bootstrap or any(":" not in b for b in bootstrap.split(",")):
            raise SettingsError(f"KAFKA_BOOTSTRAP must be host:port[,host:port], got {bootstrap!r}")
        data_dir = Path(env.get("DATA_DIR") or REPO_ROOT / ".run" / "worker")
        audit_retention = _int(env, "AUDIT_RETENTION_MS", -1, minimum=-1)
        if audit_retention == 0:
            raise SettingsError("AUDIT_RETENTION_MS must be -1 (forever) or a positive number of ms, got 0")
        tls_cert, tls_key = env.get("WEB_TLS_CERT") or "", env.get("WEB_TLS_KEY") or ""
        if bool(tls_cert) != bool(tls_key):
            raise SettingsError("WEB_TLS_CERT and WEB_TLS_KEY go together (HTTPS needs both)")
        for name, raw in (("WEB_TLS_CERT", tls_cert), ("WEB_TLS_KEY", tls_key)):
            if raw and not Path(raw).is_file():
                raise SettingsError(f"{name} {raw!r} is not a readable file")
        return cls(
            kafka_bootstrap=bootstrap,
            app_id=env.get("APP_ID", "retail-stock-sync"),
            topic_partitions=_int(env, "TOPIC_PARTITIONS", 8, minimum=1),
            data_dir=data_dir,
            web_host=env.get("WEB_HOST", "127.0.0.1"),
            web_port=_int(env, "WEB_PORT", 6066, minimum=1),
            processing_guarantee=guarantee,
            reservation_ttl=_int(env, "RESERVATION_TTL", 259200, minimum=1),
            channel_publish_interval=_float(env, "CHANNEL_PUBLISH_INTERVAL", 1.0),
            dedupe_retention=_int(env, "DEDUPE_RETENTION", 604800, minimum=1),
            api_tokens=parse_tokens(env.get("API_TOKENS", "")),
            day_close_grace=_float(env, "DAY_CLOSE_GRACE", 5.0),
            expiry_sweep_interval=_float(env, "EXPIRY_SWEEP_INTERVAL", 30.0, minimum=0.1),
            sale_cost_retention=_int(env, "SALE_COST_RETENTION", _int(env, "DEDUPE_RETENTION", 604800, minimum=1),
                                     minimum=1),
            chart_overrides=env.get("CHART_OVERRIDES", ""),
            log_json=env.get("LOG_FORMAT", "text") == "json",
            rocksdb_cache_mb=_int(env, "ROCKSDB_CACHE_MB", 32, minimum=1),
            finance_ledger_cache_mb=_int(env, "FINANCE_LEDGER_CACHE_MB", 96, minimum=1),
            # The broker refuses sessions under group.min.session.timeout.ms (6 s by default).
            session_timeout=_float(env, "KAFKA_SESSION_TIMEOUT", 15.0, minimum=6.0),
            stop_timeout=_float(env, "STOP_TIMEOUT", 20.0, minimum=1.0),
            group_instance_id=_group_instance_id(env.get("KAFKA_GROUP_INSTANCE_ID", "")),
            replay_window=_int(env, "REPLAY_WINDOW", 600, minimum=1),
            producer_linger_ms=_int(env, "PRODUCER_LINGER_MS", 25, minimum=0),
            fetch_max_wait_ms=_int(env, "FETCH_MAX_WAIT_MS", 50, minimum=1),
            fetch_min_bytes=_int(env, "FETCH_MIN_BYTES", 1, minimum=1),
            audit_log=Path(env["AUDIT_LOG"]) if env.get("AUDIT_LOG") else data_dir / "audit.log",
            erp_enabled=env.get("ERP_ENABLED", "1").lower() not in ("0", "false", "no", "off"),
            erp_url=_erp_url(env.get("ERP_URL", "")),
            erp_database=env.get("ERP_DATABASE", "stocksync"),
            erp_user=env.get("ERP_USER", "admin"),
            erp_password=_secret(env, "ERP_PASSWORD", "admin"),
            erp_max_rps=_float(env, "ERP_MAX_RPS", 5.0, minimum=0.01),
            erp_timeout=_float(env, "ERP_TIMEOUT", 10.0, minimum=0.1),
            day_close_after=_float(env, "DAY_CLOSE_AFTER", 7200.0),
            late_batch_after=_float(env, "LATE_BATCH_AFTER", 60.0),
            limits=Limits(  # SPEC §4
                record_bytes=_int(env, "INPUT_MAX_RECORD_BYTES", 512 * 1024, minimum=1024),
                identifier_chars=_int(env, "INPUT_MAX_ID_CHARS", 128, minimum=8),
                lines=_int(env, "INPUT_MAX_LINES", 1000, minimum=1),
                quantity=_int(env, "INPUT_MAX_QUANTITY", 1_000_000, minimum=1),
                future_years=_int(env, "INPUT_MAX_YEARS_AHEAD", 10, minimum=1),
            ),
            kafka=connection_from_env(env, bootstrap, SettingsError),
            topic_replication=_int(env, "TOPIC_REPLICATION", 1, minimum=1),
            audit_retention_ms=audit_retention,
            web_max_body=_int(env, "WEB_MAX_BODY", 1 << 20, minimum=1024),
            web_tls_cert=Path(tls_cert) if tls_cert else None,
            web_tls_key=Path(tls_key) if tls_key else None,
        )


_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,240}")   # Kafka takes 249; the worker adds 9 (faust_app.py)


def _group_instance_id(raw: str) -> str | None:
    """A worker's static identity in the consumer group (Kafka's group.instance.id), or None."""
    raw = raw.strip()
    if raw and not _INSTANCE_ID.fullmatch(raw):
        raise SettingsError(f"KAFKA_GROUP_INSTANCE_ID must be 1-240 of A-Z a-z 0-9 . _ -, got {raw!r}")
    return raw or None


def _erp_url(raw: str) -> str:
    raw = raw.strip()
    if raw and not raw.startswith(("http://", "https://")):
        raise SettingsError(f"ERP_URL must be an http(s) URL of the Tryton server, got {raw!r}")
    return raw if not raw or raw.endswith("/") else raw + "/"


def _secret(env: dict[str, str], name: str, default: str) -> str:
    """NAME, or the content of the file NAME_FILE (a mounted secret), else the default."""
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE names {path!r}, which cannot be read: {exc.strerror}") from None
    return env.get(name, default)
