"""SPEC §10: the pipeline over SASL_SSL (SCRAM-SHA-512) against a local broker whose CA and certificate
are made at test time; a wrong password stops a worker at start with an authentication error."""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import quote

import pytest

from app import topics as t
from app.broker import LocalBroker, SecureListener
from app.settings import REPO_ROOT, Settings
from tests.e2e.harness import WorkerProcess, api, read, send
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e

HOME = REPO_ROOT / ".run" / "test" / "secure-kafka"


def _free_ports(count: int, start: int = 29300) -> list[int]:
    ports, port = [], start
    while len(ports) < count:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                ports.append(port)
        port += 1
    return ports


@pytest.fixture(scope="module")
def secure_broker():
    plain, controller, sasl_ssl, web = _free_ports(4)
    shutil.rmtree(HOME, ignore_errors=True)
    broker = LocalBroker(home=HOME, port=plain, controller_port=controller, secure=SecureListener(port=sasl_ssl))
    broker.start(timeout=180)
    broker.web_port = web
    yield broker
    broker.stop()


def test_pipeline_runs_over_sasl_ssl_only(secure_broker):
    env = secure_broker.secure_env()
    kafka = Settings.from_env(env).kafka          # the clients' own connection: TLS + SCRAM-SHA-512
    assert kafka.bootstrap == secure_broker.secure_bootstrap != secure_broker.bootstrap
    data_dir = HOME.parent / "secure-worker"
    shutil.rmtree(data_dir, ignore_errors=True)
    tls = secure_broker.tls_dir   # the broker's certificate is for 127.0.0.1: the worker serves HTTPS with it
    worker = WorkerProcess(secure_broker.secure_bootstrap, data_dir, secure_broker.web_port, "stock-sync-secure",
                           web_ca=secure_broker.ca_file, STAGES="master,ingest,positions",
                           WEB_TLS_CERT=str(tls / "broker.pem"), WEB_TLS_KEY=str(tls / "broker.key"), **env)
    worker.start(wait_ready=240)
    try:
        s = Scenario("secure")
        store, sku = s.loc("S1"), s.sku(1)
        send(kafka, [s.item(1), s.location("S1")])
        send(kafka, [s.receipt(store, [(sku, 10, "7.00")], at=0)])
        send(kafka, [s.pos(store, "SALE", [{"sku": sku, "quantity": 2, "unit_price": "19.99"}], at=10)])
        key = f"{sku}@{store}"
        records = read(kafka, t.AVAILABILITY, where=lambda r: r.key == key, expect=2, timeout=180)
        assert [r.value["on_hand"] for r in records] == [10, 8], worker.log_tail()
        assert records[-1].value["cause"]["movement_type"] == "SALE"
        # The web views over HTTPS: the position through the token-guarded view, nothing over plain HTTP.
        assert worker.url.startswith("https://")
        position = api(worker, f"/v1/positions/{quote(sku, safe='')}/{quote(store, safe='')}")
        assert position.status == 200 and position.json["on_hand"] == 8, position
        with pytest.raises((OSError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{secure_broker.web_port}/healthz", timeout=5)
    finally:
        worker.stop()


def test_wrong_password_fails_at_start_naming_authentication(secure_broker):
    env = {**secure_broker.secure_env(), "KAFKA_SASL_PASSWORD": "not-the-password"}
    data_dir = HOME.parent / "secure-worker-denied"
    shutil.rmtree(data_dir, ignore_errors=True)
    worker = WorkerProcess(secure_broker.secure_bootstrap, data_dir, secure_broker.web_port + 1,
                           "stock-sync-denied", **env)
    began = time.monotonic()
    worker.start(wait_ready=0)
    try:
        code = worker.proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"a worker with a wrong password still runs after 90 s:\n{worker.log_tail()}")
    log = worker.log_tail(20)
    assert code != 0 and time.monotonic() - began < 90
    assert "authentication failed" in log.lower(), log
    assert "not-the-password" not in log


def test_cli_with_wrong_password_says_authentication_failed(secure_broker):
    env = {**secure_broker.secure_env(), "KAFKA_SASL_PASSWORD": "not-the-password"}
    result = subprocess.run([sys.executable, "-m", "app.cli", "topics"], cwd=REPO_ROOT, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=90)
    assert result.returncode != 0
    assert "authentication failed" in (result.stdout + result.stderr).lower(), result.stderr[-2000:]
