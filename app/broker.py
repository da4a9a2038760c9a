"""A real single-node Apache Kafka 4.x broker (KRaft, loopback only) run from Maven Central jars."""
from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from app.local_process import NotRunning, our_live_pid, run_action, timed

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy" / "kafka"
POM = DEPLOY / "pom.xml"
LOG4J_CONFIG = DEPLOY / "log4j2.properties"
TEMPLATE = DEPLOY / "server.properties.template"
DEFAULT_HOME = REPO_ROOT / ".run" / "kafka"
# For a 2-core box. No -XX:TieredStopAtLevel=1: it saves only ~0.3 s of a ~2.7 s warm start (more when the
# box is busy) and costs steady-state throughput, which the benchmarks measure. KAFKA_JVM_OPTS replaces these.
DEFAULT_JVM_OPTS = ("-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent"
                    " -Djava.awt.headless=true")


class BrokerError(RuntimeError):
    """The local broker cannot be set up or started; the message says why and what to do."""


def default_libs() -> Path:
    return Path(os.environ.get("KAFKA_LIBS_DIR") or REPO_ROOT / ".cache" / "kafka-libs")


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"`{name}` is not on PATH; {hint}")
    return path


@functools.cache
def java() -> str:
    """The `java` on PATH, checked once to be 17 or newer (Kafka 4.x brokers refuse older ones)."""
    path = _tool("java", "install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([path, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match is None:
        raise BrokerError(f"cannot read the Java version from `java -version`: {out.strip()[:200]}")
    major = int(match.group(2)) if match.group(1) == "1" else int(match.group(1))
    if major < 17:
        raise BrokerError(f"Kafka 4.x needs Java 17 or newer; `{path}` is Java {major}")
    return path


def ensure_jars(libs: Path | None = None) -> Path:
    """Copy the broker's jars from Maven Central into `libs` unless the current POM's jars are there."""
    libs = Path(libs or default_libs())
    java()
    marker = libs / f".resolved-{hashlib.sha256(POM.read_bytes()).hexdigest()[:16]}"
    if marker.exists():
        return libs
    mvn = _tool("mvn", "install Maven 3 (e.g. apt-get install maven) to fetch Kafka from Maven Central")
    # Resolve beside the target and swap it in, so a concurrent reader never sees half a classpath.
    staging = libs.with_name(f".{libs.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    print(f"resolving the Kafka broker jars from Maven Central into {libs} ...", file=sys.stderr, flush=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
         f"-DoutputDirectory={staging}"], capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        output = (result.stdout + result.stderr)[-3000:]
        raise BrokerError(f"mvn could not resolve the broker jars ({POM}):\n{output}")
    (staging / marker.name).touch()
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Kafka does: TIME_WAIT is not "taken"
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def metadata_ok(port: int, timeout: float = 2.0) -> bool:
    """True once the broker answers a Metadata (v4) request that lists at least one broker.

    Plain sockets rather than a Kafka client, so it also works from inside a running event loop."""
    answer = _metadata(port, timeout)
    return answer is not None and answer[0] >= 1


def cluster_id_at(port: int, timeout: float = 2.0) -> str | None:
    """The cluster id of the broker answering on `port`, None if none answers."""
    answer = _metadata(port, timeout)
    return answer[1] if answer is not None else None


def _metadata(port: int, timeout: float) -> tuple[int, str | None] | None:
    """(broker count, cluster id) from a Metadata v4 request on `port`, None if nothing answers."""
    client_id = b"broker-probe"
    # header v1: api_key 3 (Metadata), version 4, correlation id, client id; body: no topics, no auto-create
    request = struct.pack(f">hhih{len(client_id)}sib", 3, 4, 7, len(client_id), client_id, 0, 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exactly(s, 4))
            body = _recv_exactly(s, size)
    except (OSError, struct.error):
        return None
    correlation_id, _throttle, brokers = struct.unpack_from(">iii", body)
    if correlation_id != 7:
        return None
    at = 12
    try:
        for _ in range(brokers):   # node_id, host, port, rack (nullable)
            at += 4
            (host,) = struct.unpack_from(">h", body, at)
            at += 2 + host + 4
            (rack,) = struct.unpack_from(">h", body, at)
            at += 2 + max(rack, 0)
        (length,) = struct.unpack_from(">h", body, at)
    except struct.error:
        return brokers, None
    cluster = body[at + 2:at + 2 + length].decode() if length >= 0 else None
    return brokers, cluster


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return data


def _cluster_id() -> str:
    """A Kafka Uuid string, as `kafka-storage random-uuid` makes them (never with a leading '-')."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class SecureListener:
    """An extra SASL_SSL listener (SCRAM-SHA-512) with one user, its certificates made at start."""
    port: int
    username: str = "stock-sync"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    keystore_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run([_tool("openssl", "apt-get install openssl"), *args], cwd=cwd,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"openssl {args[0]} failed: {(result.stdout + result.stderr).strip()[-2000:]}")


def make_certificates(directory: Path, keystore_password: str) -> None:
    """A throwaway CA (ca.pem) and a broker certificate for 127.0.0.1/localhost signed by it, in a
    PKCS12 keystore (broker.p12) the broker reads; made fresh at every start, valid two days."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=retail-stock-sync local CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", "/CN=localhost", cwd=directory)
    (directory / "broker.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                          "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "broker.pem", "-days", "2", "-extfile", "broker.ext", cwd=directory)
    _openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
             "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{keystore_password}", cwd=directory)


class LocalBroker:
    """One broker this project starts and owns: its config, data, logs and pid file live in `home`."""

    def __init__(self, home: Path = DEFAULT_HOME, port: int = 9092, controller_port: int = 9093,
                 heap: str = "512m", libs: Path | None = None, secure: SecureListener | None = None) -> None:
        self.home = Path(home).absolute()  # the pid check matches this path in the java command line
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.libs = Path(libs or default_libs()).absolute()
        self.data_dir = self.home / "data"
        self.config = self.home / "server.properties"
        self.pid_file = self.home / "broker.pid"
        self.log_file = self.home / "logs" / "server.log"
        self.out_file = self.home / "logs" / "broker.out"
        self.secure = secure
        self.tls_dir = self.home / "tls"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secure_bootstrap(self) -> str:
        if self.secure is None:
            raise BrokerError("this broker was started without the SASL_SSL listener")
        return f"127.0.0.1:{self.secure.port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the SASL_SSL listener's certificate (clients' KAFKA_SSL_CAFILE)."""
        return self.tls_dir / "ca.pem"

    def secure_env(self) -> dict[str, str]:
        """The client settings (app.settings) that reach this broker over SASL_SSL with SCRAM-SHA-512."""
        assert self.secure is not None
        return {"KAFKA_BOOTSTRAP": self.secure_bootstrap, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": self.secure.username,
                "KAFKA_SASL_PASSWORD": self.secure.password, "KAFKA_SSL_CAFILE": str(self.ca_file)}

    def pid(self) -> int | None:
        """The pid of our broker if it is alive; a stale pid file (or a recycled pid) gives None."""
        return our_live_pid(self.pid_file, self._proc, b"kafka.Kafka", str(self.config).encode())

    def is_running(self) -> bool:
        return self.pid() is not None and metadata_ok(self.port)

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker (or reuse ours if it runs); returns the bootstrap address once it answers."""
        if self.pid() is not None:
            return self._wait_ready(timeout)
        self.pid_file.unlink(missing_ok=True)
        for port in (self.port, self.controller_port, *((self.secure.port,) if self.secure else ())):
            if not _port_free(port):
                raise BrokerError(f"port {port} on 127.0.0.1 is already in use by another process, not by "
                                  f"the broker in {self.home}; stop that process or choose other ports "
                                  f"(--port / KAFKA_PORT)")
        ensure_jars(self.libs)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.secure is not None:
            make_certificates(self.tls_dir, self.secure.keystore_password)
        self._render_config()
        self._format_storage()
        jvm_opts = (os.environ.get("KAFKA_JVM_OPTS") or DEFAULT_JVM_OPTS).split()
        command = [java(), "-Xms256m", f"-Xmx{self.heap}", *jvm_opts, *self._logging_flags(),
                   "-cp", f"{self.libs}/*", "kafka.Kafka", str(self.config)]
        with open(self.out_file, "wb") as out:
            # A session of its own: Ctrl-C in the terminal that started it must not kill the broker.
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=self.home, start_new_session=True)
        self.pid_file.write_text(f"{self._proc.pid}\n")
        return self._wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL if it is still alive after `timeout` seconds."""
        if not self._signal(signal.SIGTERM, timeout):
            self._signal(signal.SIGKILL, 10.0)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut would: for the chaos tests."""
        self._signal(signal.SIGKILL, 10.0)
        self.pid_file.unlink(missing_ok=True)

    def restart(self, timeout: float = 90.0) -> str:
        self.stop()
        return self.start(timeout)

    def wipe(self) -> None:
        """Stop and delete every topic and the cluster id: the next start formats a fresh cluster."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of this run's console output (WARN+ and JVM errors), else of the server log."""
        for path in (self.out_file, self.log_file):
            try:
                text = path.read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                return f"--- {path}\n" + "\n".join(text.splitlines()[-lines:])
        return "(no broker output yet)"

    def _render_config(self) -> None:
        secure = dict(secure_listener="", secure_advertised="", secure_protocol="", secure_config="")
        if self.secure is not None:
            listener = f",SASL_SSL://127.0.0.1:{self.secure.port}"
            # Clients authenticate with SCRAM over TLS; broker-to-controller traffic stays PLAINTEXT
            # on loopback (one node, nothing leaves the machine).
            secure = dict(secure_listener=listener, secure_advertised=listener, secure_protocol=",SASL_SSL:SASL_SSL",
                          secure_config="\n".join((
                              "sasl.enabled.mechanisms=SCRAM-SHA-512",
                              "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                              "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                              "ssl.keystore.type=PKCS12",
                              f"ssl.keystore.location={self.tls_dir / 'broker.p12'}",
                              f"ssl.keystore.password={self.secure.keystore_password}",
                              f"ssl.key.password={self.secure.keystore_password}",
                              "ssl.client.auth=none")))
        self.config.write_text(Template(TEMPLATE.read_text()).substitute(
            port=self.port, controller_port=self.controller_port, data_dir=self.data_dir, **secure))

    def _logging_flags(self) -> list[str]:
        return [f"-Dkafka.logs.dir={self.log_file.parent}", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"]

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        # Short-lived tool: C1-only JIT and a small heap start it faster.
        result = subprocess.run(
            [java(), "-Xmx256m", "-XX:TieredStopAtLevel=1", *self._logging_flags(), "-cp", f"{self.libs}/*",
             "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(self.config),
             *(["--add-scram", f"SCRAM-SHA-512=[name={self.secure.username},password={self.secure.password}]"]
               if self.secure is not None else [])],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting the KRaft storage in {self.data_dir} failed:\n"
                              f"{(result.stdout + result.stderr).strip()[-3000:]}")

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                self.pid_file.unlink(missing_ok=True)
                code = self._proc.returncode if self._proc is not None else "?"
                raise BrokerError(f"the broker exited (code {code}) while starting; "
                                  f"full log: {self.log_file}\n{self.log_tail()}")
            if metadata_ok(self.port):
                self._check_it_is_ours()
                return self.bootstrap
            time.sleep(0.25)
        self.stop()
        raise BrokerError(f"the broker did not answer on {self.bootstrap} within {timeout:.0f}s and was "
                          f"stopped; full log: {self.log_file}\n{self.log_tail()}")

    def _check_it_is_ours(self) -> None:
        """The broker answering on our port must be the one formatted in our data dir.

        Two checkouts starting brokers at the same moment can both find a port pair free; the later JVM
        then fails to bind and dies some seconds after, while the other broker already answers on the
        port: without this check the tests ran against another checkout's broker and wrote into it."""
        ours = self.cluster_id()
        answering = cluster_id_at(self.port)
        if ours is None or answering is None or answering == ours:
            return
        self.stop()
        raise BrokerError(f"another broker (cluster {answering}) answers on {self.bootstrap}, not the one in "
                          f"{self.home} (cluster {ours}), which could not bind its ports: they were taken "
                          f"after the check. Start again (other free ports are picked) or choose other ports "
                          f"(--port / KAFKA_PORT); full log: {self.log_file}")

    def cluster_id(self) -> str | None:
        """The cluster id our data dir was formatted with."""
        try:
            found = re.search(r"^cluster\.id=(\S+)", (self.data_dir / "meta.properties").read_text(), re.M)
        except OSError:
            return None
        return found.group(1) if found else None

    def _signal(self, sig: int, timeout: float) -> bool:
        """Send `sig` to our broker; True once it is gone (or was not running)."""
        pid = self.pid()
        if pid is None:
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                return True
            time.sleep(0.1)
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.broker", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status", "restart", "jars", "wipe"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    parser.add_argument("--controller-port", type=int, help="default: --port + 1")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--heap", default="512m")
    args = parser.parse_args(argv)
    broker = LocalBroker(home=args.home, port=args.port, heap=args.heap,
                         controller_port=args.controller_port or args.port + 1)

    def start() -> str:
        bootstrap, took = timed(broker.restart if args.action == "restart" else broker.start)
        return (f"Kafka broker ready on {bootstrap} (pid {broker.pid()}, {took:.1f}s); log: {broker.log_file}\n"
                f"export KAFKA_BOOTSTRAP={bootstrap}")

    def stop() -> str:
        broker.stop()
        return "Kafka broker stopped"

    def wipe() -> str:
        broker.wipe()
        return f"Kafka broker stopped and {broker.data_dir} deleted"

    def status() -> str:
        if not broker.is_running():
            raise NotRunning(f"home {broker.home}")
        return f"running on {broker.bootstrap} (pid {broker.pid()}); log: {broker.log_file}"

    actions = {"jars": lambda: f"broker jars ready in {ensure_jars(broker.libs)}", "start": start,
               "restart": start, "stop": stop, "wipe": wipe, "status": status}
    run_action(actions[args.action], BrokerError)

if __name__ == "__main__":
    main()
