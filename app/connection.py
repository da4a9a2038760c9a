"""How every Kafka client of the project connects (SPEC §10): one value built from Settings, turned into
aiokafka keyword arguments or Faust's `broker_credentials`, so TLS and SASL are set in one place."""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how to talk to them. A plain `str` bootstrap anywhere a connection is
    accepted means PLAINTEXT (the local broker), so the default path stays as it was."""
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        # One context per connection value: building it reads the certificate files, and a worker
        # opens several clients (consumer, producer, admin) that can share it.
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return context

    def __repr__(self) -> str:  # never print the password
        return (f"KafkaConnection({self.bootstrap!r}, {self.security_protocol}"
                f"{', ' + str(self.sasl_mechanism) + ' as ' + repr(self.sasl_username) if self.uses_sasl else ''})")


def connection_of(target: KafkaConnection | str) -> KafkaConnection:
    return target if isinstance(target, KafkaConnection) else KafkaConnection(bootstrap=target)


def client_kwargs(target: KafkaConnection | str) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    conn = connection_of(target)
    kwargs: dict[str, Any] = {"bootstrap_servers": conn.bootstrap}
    if conn.security_protocol == "PLAINTEXT":
        return kwargs
    kwargs["security_protocol"] = conn.security_protocol
    if conn.uses_tls:
        kwargs["ssl_context"] = conn.ssl_context
    if conn.uses_sasl:
        kwargs.update(sasl_mechanism=conn.sasl_mechanism, sasl_plain_username=conn.sasl_username,
                      sasl_plain_password=conn.sasl_password)
    return kwargs


def faust_credentials(target: KafkaConnection | str) -> Any:
    """Faust's `broker_credentials` for the connection (None for PLAINTEXT)."""
    import faust  # only the worker needs Faust; the tools around it use client_kwargs

    conn = connection_of(target)
    if conn.uses_sasl:
        # SASLCredentials picks SASL_SSL when given a context, SASL_PLAINTEXT without one.
        return faust.SASLCredentials(username=conn.sasl_username, password=conn.sasl_password,
                                     mechanism=conn.sasl_mechanism, ssl_context=conn.ssl_context)
    if conn.uses_tls:
        return faust.SSLCredentials(conn.ssl_context)
    return None


def connection_from_env(env: dict[str, str], bootstrap: str, error: type[Exception]) -> KafkaConnection:
    """Read and check the KAFKA_SECURITY_* / KAFKA_SASL_* / KAFKA_SSL_* variables (called by Settings)."""
    protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
    if protocol not in PROTOCOLS:
        raise error(f"KAFKA_SECURITY_PROTOCOL must be one of {PROTOCOLS}, got {protocol!r}")
    sasl = protocol.startswith("SASL_")
    tls = protocol.endswith("SSL")
    mechanism = username = password = None
    if sasl:
        mechanism = (env.get("KAFKA_SASL_MECHANISM") or "").strip().upper()
        if mechanism not in MECHANISMS:
            raise error(f"KAFKA_SASL_MECHANISM must be one of {MECHANISMS} with {protocol}, got {mechanism!r}")
        username = env.get("KAFKA_SASL_USERNAME") or ""
        if not username:
            raise error(f"KAFKA_SASL_USERNAME is required with KAFKA_SECURITY_PROTOCOL={protocol}")
        password = env.get("KAFKA_SASL_PASSWORD") or ""
        password_file = env.get("KAFKA_SASL_PASSWORD_FILE") or ""
        if password and password_file:
            raise error("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
        if password_file:
            try:
                # Secret files (docker/k8s secrets) end with a newline that is not part of the password.
                password = Path(password_file).read_text().rstrip("\r\n")
            except OSError as exc:
                raise error(f"KAFKA_SASL_PASSWORD_FILE {password_file!r} cannot be read: {exc.strerror}") from None
        if not password:
            raise error(f"KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE is required with {protocol}")
    files: dict[str, Path | None] = {}
    for name in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
        raw = env.get(name) or ""
        if raw and not tls:
            raise error(f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS")
        if raw and not Path(raw).is_file():
            raise error(f"{name} {raw!r} is not a readable file")
        files[name] = Path(raw) if raw else None
    if files["KAFKA_SSL_KEYFILE"] and not files["KAFKA_SSL_CERTFILE"]:
        raise error("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the client certificate)")
    return KafkaConnection(bootstrap=bootstrap, security_protocol=protocol, sasl_mechanism=mechanism,
                           sasl_username=username, sasl_password=password,
                           ssl_cafile=files["KAFKA_SSL_CAFILE"], ssl_certfile=files["KAFKA_SSL_CERTFILE"],
                           ssl_keyfile=files["KAFKA_SSL_KEYFILE"])


class KafkaUnavailable(RuntimeError):
    """A client could not connect; the message says where, how, and why (authentication, TLS, network)."""


async def explain_failure(target: KafkaConnection | str, timeout: float = 10.0) -> str:
    """Why the brokers refuse us: aiokafka's bootstrap only says "Unable to bootstrap" (the cause goes
    to its log), so open one plain connection per address and keep the first real error."""
    import asyncio

    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    conn = connection_of(target)
    kwargs = {k: v for k, v in client_kwargs(conn).items() if k != "bootstrap_servers"}
    reasons = []
    for address in conn.bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            probe = await asyncio.wait_for(create_conn(host, int(port), **kwargs), timeout)
        except KafkaError as exc:
            text = str(exc)
            if "authenticat" in text.lower() or "sasl" in type(exc).__name__.lower():
                return f"authentication failed ({type(exc).__name__}: {text})"
            reasons.append(f"{address}: {type(exc).__name__}: {text}")
        except ssl.SSLError as exc:
            return f"TLS handshake failed ({exc}); check KAFKA_SSL_CAFILE and the broker's certificate"
        except (OSError, asyncio.TimeoutError) as exc:
            reasons.append(f"{address}: {exc!r}")
        else:
            probe.close()
    return "; ".join(reasons) or "the brokers answered a probe but not the client (see the log above)"


async def start_client(client, target: KafkaConnection | str) -> None:
    """`await client.start()`, with a failure to connect turned into a KafkaUnavailable that says why."""
    from aiokafka.errors import KafkaConnectionError

    try:
        await client.start()
    except KafkaConnectionError:
        reason = await explain_failure(target)
        raise KafkaUnavailable(f"cannot connect to Kafka {connection_of(target)!r}: {reason}") from None
