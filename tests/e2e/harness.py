"""End-to-end harness: real worker processes against the real local broker, and output readers."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from app.connection import KafkaConnection
from app.kafka_io import Received, produce, read_topic
from app.settings import REPO_ROOT

VIEWER = "viewer-token"
ADMIN = "admin-token"


def free_ports(n: int) -> list[int]:
    """Ports of our own for a private broker: the session broker (19092) or a parallel run may hold the usual ones."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class WorkerProcess:
    """One pipeline worker as a subprocess (`python -m app.cli worker`), as an operator would run it."""

    def __init__(self, bootstrap: str, data_dir: Path, web_port: int, app_id: str, *, web_ca: Path | None = None,
                 **env: str) -> None:
        self.bootstrap = bootstrap
        # With WEB_TLS_CERT/WEB_TLS_KEY in env the worker serves HTTPS; web_ca is the CA that signed it.
        self.web_tls = ssl.create_default_context(cafile=str(web_ca)) if web_ca else None
        self.data_dir = data_dir
        self.web_port = web_port
        self.app_id = app_id
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": bootstrap,
            "APP_ID": app_id,
            "DATA_DIR": str(data_dir),
            "WEB_PORT": str(web_port),
            "WEB_HOST": "127.0.0.1",
            "API_TOKENS": f"{VIEWER}=viewer,{ADMIN}=admin",
            "CHANNEL_PUBLISH_INTERVAL": "0.5",
            "DAY_CLOSE_GRACE": "2",
            "LATE_BATCH_AFTER": "2",
            "EXPIRY_SWEEP_INTERVAL": "1",
            **env,
        }
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.web_tls else 'http'}://127.0.0.1:{self.web_port}"

    def start(self, wait_ready: float = 120.0) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=REPO_ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait_ready:
            self.wait_ready(wait_ready)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2, context=self.web_tls) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def send(bootstrap: KafkaConnection | str, events: list[tuple[str, str | None, object]]) -> int:
    return asyncio.run(produce(bootstrap, events))


def read(bootstrap: KafkaConnection | str, topic: str, *, where: Callable[[Received], bool] = lambda r: True,
         expect: int = 0, timeout: float = 60.0, settle: float = 1.5) -> list[Received]:
    """Read `topic` until at least `expect` records match `where` (then let it settle), or time out."""
    deadline = time.monotonic() + timeout
    matched: list[Received] = []
    while time.monotonic() < deadline:
        records = asyncio.run(read_topic(bootstrap, topic, until_idle=0.5, timeout=20))
        matched = [r for r in records if where(r)]
        if len(matched) >= expect and (expect or matched):
            time.sleep(settle)
            records = asyncio.run(read_topic(bootstrap, topic, until_idle=0.5, timeout=20))
            return [r for r in records if where(r)]
        time.sleep(1.0)
    return matched


def latest_by_key(records: list[Received], version_field: str = "version") -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for r in records:
        if r.key is None:
            continue
        if r.key not in latest or r.value.get(version_field, 0) >= latest[r.key].get(version_field, 0):
            latest[r.key] = r.value
    return latest


def wait_for_versions(bootstrap: str, expected: dict[str, int], timeout: float = 90.0) -> dict[str, dict]:
    """Wait until every SKU@LOCATION key has an availability record at (at least) the expected version."""
    from app import topics as t
    deadline = time.monotonic() + timeout
    latest: dict[str, dict] = {}
    while time.monotonic() < deadline:
        records = asyncio.run(read_topic(bootstrap, t.AVAILABILITY, until_idle=0.3, timeout=20))
        latest = latest_by_key([r for r in records if r.key in expected])
        if all(latest.get(k, {}).get("version", 0) >= v for k, v in expected.items()):
            return latest
        time.sleep(0.5)
    missing = {k: (latest.get(k, {}).get("version"), v) for k, v in expected.items()
               if latest.get(k, {}).get("version", 0) < v}
    raise AssertionError(f"availability versions not reached (key: (seen, wanted)): {missing}")


def wait_for_master(worker: WorkerProcess, skus: list[str] = (), locations: list[str] = (),
                    timeout: float = 60.0) -> None:
    """Master data reaches workers asynchronously (global tables): wait until the worker has written
    the scenario's items and locations to its global tables' changelogs, then give peers a moment."""
    wanted = {f"{worker.app_id}-master-items-changelog": set(skus),
              f"{worker.app_id}-master-locations-changelog": set(locations)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = {}
        for topic, keys in wanted.items():
            if keys:
                seen = {r.key for r in asyncio.run(read_topic(worker.bootstrap, topic, until_idle=0.3, timeout=10))}
                if keys - seen:
                    missing[topic] = keys - seen
        if not missing:
            time.sleep(0.5)
            return
        time.sleep(0.5)
    raise AssertionError(f"worker never loaded master data: {missing}")


def group_caught_up(bootstrap: str, group: str, topics: list[str], timeout: float = 180.0) -> None:
    """Wait until consumer group `group` has committed, on every partition of `topics`, today's end offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def wait() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await consumer.start()
        await admin.start()
        try:
            tps = [TopicPartition(d["topic"], p["partition"])
                   for d in await admin.describe_topics(topics) for p in d["partitions"]]
            consumer.assign(tps)
            target = await consumer.end_offsets(tps)
            deadline = time.monotonic() + timeout
            behind: dict = {}
            while time.monotonic() < deadline:
                committed = await admin.list_consumer_group_offsets(group)
                behind = {tp: end for tp, end in target.items()
                          if end > 0 and (tp not in committed or committed[tp].offset < end)}
                if not behind:
                    return
                await asyncio.sleep(1.0)
            raise AssertionError(f"{group} still behind on {len(behind)} partitions: {sorted(map(str, behind))[:5]}")
        finally:
            await admin.close()
            await consumer.stop()

    asyncio.run(wait())


# --- Operator web views --------------------------------------------------------------------------

class ApiAnswer:
    """One HTTP answer of a worker's web view: status, headers, and the body (JSON when it is JSON)."""

    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def json(self):
        import json
        return json.loads(self.raw)

    def __repr__(self) -> str:
        return f"ApiAnswer({self.status}, {self.raw[:300]!r})"


def api(worker: WorkerProcess | str, path: str, token: str | None = VIEWER, *, method: str = "GET",
        body: object | None = None, timeout: float = 30.0) -> ApiAnswer:
    """Call a web view of a worker (or a base URL) with a bearer token; HTTP errors are answers, not raises."""
    import json
    import urllib.error
    base = worker.url if isinstance(worker, WorkerProcess) else worker.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        context = worker.web_tls if isinstance(worker, WorkerProcess) else None
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            return ApiAnswer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as err:
        return ApiAnswer(err.code, dict(err.headers), err.read())


def wait_for_api(worker: WorkerProcess | str, path: str, *, until: Callable[[ApiAnswer], bool] | None = None,
                 token: str | None = VIEWER, timeout: float = 60.0) -> ApiAnswer:
    """Poll a view until `until(answer)` holds (default: status 200); return that answer or fail with the last."""
    until = until or (lambda a: a.status == 200)
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = api(worker, path, token)
            if until(answer):
                return answer
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{path} never reached the expected answer in {timeout}s; last: {answer!r}")


def wait_for_master_views(workers: WorkerProcess | list[WorkerProcess], skus: list[str] = (),
                          locations: list[str] = (), timeout: float = 60.0) -> None:
    """Wait until each worker's own global tables hold the items and locations (GET /v1/master/...)."""
    from urllib.parse import quote
    for worker in workers if isinstance(workers, list) else [workers]:
        for sku in skus:
            wait_for_api(worker, f"/v1/master/items/{quote(sku, safe='')}", timeout=timeout)
        for location in locations:
            wait_for_api(worker, f"/v1/master/locations/{quote(location, safe='')}", timeout=timeout)


def declare_changelogs(bootstrap: str, app_id: str) -> list[str]:
    """Create the changelog topics of every table of `app_id` up front (see app.kafka_io.create_topics)."""
    from app.kafka_io import create_topics
    from app.worker import load_stages
    names = [f"{app_id}-{table.name}-changelog" for table in load_stages().tables.values()]
    asyncio.run(create_topics(bootstrap, 8, names))
    return names

