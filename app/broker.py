"""Local Apache Kafka broker (KRaft, one node, loopback) from Maven Central jars, started with Java 17."""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from app.settings import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy" / "kafka"
POM = DEPLOY / "pom.xml"
DEFAULT_HOME = REPO_ROOT / ".run" / "kafka"
DEFAULT_LIBS = Path(os.environ.get("KAFKA_LIBS_DIR") or REPO_ROOT / ".cache" / "kafka-libs")


class BrokerError(RuntimeError):
    """The local broker cannot be set up or started; the message says why and what to do."""


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"`{name}` is not on PATH: {hint}")
    return path


def _java_major() -> int:
    java = _require_tool("java", "install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise BrokerError(f"cannot read the Java version from: {out.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 else major


def ensure_jars(libs: Path = DEFAULT_LIBS) -> Path:
    """Resolve the broker's jars once; a changed POM resolves them again."""
    if _java_major() < 17:
        raise BrokerError("Kafka 4.x needs Java 17 or newer on PATH")
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    marker = libs / f".resolved-{digest}"
    if marker.exists():
        return libs
    mvn = _require_tool("mvn", "install Maven (e.g. apt-get install maven) to fetch Kafka from Maven Central")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    print(f"resolving Kafka broker jars from Maven Central into {libs} ...", file=sys.stderr, flush=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
         f"-DoutputDirectory={libs}"], capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"mvn could not resolve the broker jars:\n{(result.stdout + result.stderr)[-3000:]}")
    marker.touch()
    return libs


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _metadata_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:  # not up yet: any failure means "ask again"
        return False
    finally:
        try:
            await admin.close()
        except Exception:
            pass


class LocalBroker:
    """One Kafka broker this project started and owns: its config, data, log and pid live in `home`."""

    def __init__(self, home: Path = DEFAULT_HOME, port: int = 9092, controller_port: int = 9093,
                 heap: str = "512m", libs: Path = DEFAULT_LIBS) -> None:
        self.home = Path(home)
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.libs = libs
        self.data_dir = self.home / "data"
        self.config = self.home / "server.properties"
        self.pid_file = self.home / "broker.pid"
        self.log_file = self.home / "logs" / "broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None and _port_open(self.port)

    def _render_config(self) -> None:
        template = (DEPLOY / "server.properties.template").read_text()
        self.config.write_text(template.format(port=self.port, controller_port=self.controller_port,
                                               data_dir=self.data_dir))

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = _kafka_uuid()
        result = subprocess.run(
            ["java", "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(self.config)], capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 120.0) -> str:
        """Start (or reuse) the broker and return its bootstrap address once metadata requests succeed."""
        if self.pid() is not None:
            if asyncio.run(_wait_metadata(self.bootstrap, timeout)):
                return self.bootstrap
            raise BrokerError(f"broker pid {self.pid()} is running but does not answer on {self.bootstrap}; "
                              f"see {self.log_file}")
        for port in (self.port, self.controller_port):
            if _port_open(port):
                raise BrokerError(f"port {port} on 127.0.0.1 is already taken by another process; stop it or "
                                  f"choose other ports (KAFKA_PORT / the --port option)")
        ensure_jars(self.libs)
        for folder in (self.home, self.data_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self._render_config()
        self._format_storage()
        jvm = os.environ.get("KAFKA_JVM_OPTS", "").split() or [
            "-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"]
        command = ["java", *jvm, f"-Dkafka.logs.dir={self.log_file.parent}",
                   f"-Dlog4j2.configurationFile={DEPLOY / 'log4j2.properties'}",
                   "-cp", f"{self.libs}/*", "kafka.Kafka", str(self.config)]
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"the broker exited with code {proc.returncode} while starting; last lines of "
                                  f"{self.log_file}:\n{self.log_tail()}")
            if _port_open(self.port) and asyncio.run(_wait_metadata(self.bootstrap, 5)):
                return self.bootstrap
            time.sleep(0.5)
        self.stop()
        raise BrokerError(f"the broker did not answer metadata requests within {timeout:.0f}s; see {self.log_file}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log yet)"

    def _signal_and_wait(self, sig: int, timeout: float) -> bool:
        pid = self.pid()
        if pid is None:
            return True
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                # A child of ours stays a zombie until reaped: reap it if it is ours.
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return True
            except ChildProcessError:
                pass
            except OSError:
                return True
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL if it does not exit in time."""
        if not self._signal_and_wait(signal.SIGTERM, timeout):
            self._signal_and_wait(signal.SIGKILL, 10)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would: for the chaos tests."""
        self._signal_and_wait(signal.SIGKILL, 10)
        self.pid_file.unlink(missing_ok=True)

    def restart(self, timeout: float = 120.0) -> str:
        self.stop()
        return self.start(timeout)

    def wipe(self) -> None:
        """Stop and forget every topic: a fresh cluster on the next start."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


async def _wait_metadata(bootstrap: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await _metadata_ok(bootstrap):
            return True
        await asyncio.sleep(0.5)
    return False


def _kafka_uuid() -> str:
    """A cluster id as Kafka's StorageTool makes them: 16 random bytes, URL-safe base64, no padding."""
    import base64
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.broker", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status", "restart", "jars", "wipe"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    args = parser.parse_args(argv)
    broker = LocalBroker(home=args.home, port=args.port, controller_port=args.port + 1)
    try:
        if args.action == "jars":
            print(f"broker jars ready in {ensure_jars(broker.libs)}")
        elif args.action in ("start", "restart"):
            started = time.monotonic()
            bootstrap = broker.restart() if args.action == "restart" else broker.start()
            print(f"Kafka broker ready on {bootstrap} ({time.monotonic() - started:.1f}s); log: {broker.log_file}")
            print(f"export KAFKA_BOOTSTRAP={bootstrap}")
        elif args.action == "stop":
            broker.stop()
            print("Kafka broker stopped")
        elif args.action == "wipe":
            broker.wipe()
            print(f"Kafka broker stopped and {broker.data_dir} removed")
        else:
            print(f"running on {broker.bootstrap}" if broker.is_running() else "not running")
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
