"""The systems under test, each started the same way: fresh state, its input pre-loaded, then timed.

* `ceiling`   bare aiokafka loop (bench.peers.ceiling) on `bench.movements`
* `quix`      Quix Streams (bench.peers.quix) on `bench.movements`
* `quix-stage` Quix Streams doing the position stage's own work (bench.peers.quix_stage) on `bench.stage-movements`
              (the position stage's input keyed by SKU)
* `positions` our worker with only the position stage (STAGES=positions,master) on `inventory.movements`
* `pipeline`  our worker with every stage, fed the raw channel topics
* `hops`      the pipeline's floor (bench.peers.hops): bare aiokafka, fed the raw channel topics, reading and
              writing as many records per raw event as the pipeline's run did, nothing else
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import kafka
from app.settings import REPO_ROOT
from bench.procs import SystemProcess, python
from bench.workload import Catalogue

RUN_DIR = kafka.BENCH_HOME / "runs"
PEERS = ("ceiling", "quix", "quix-stage")   # the systems that are not our worker
PEER_INPUT = "bench.movements"
STAGE_INPUT = "bench.stage-movements"


def input_topic(peer: str) -> str:
    """Where a peer's throughput input is loaded: the position stage's movements, keyed by SKU for
    `quix-stage` (Quix scopes state to the key), by SKU@LOCATION for the others."""
    return STAGE_INPUT if peer == "quix-stage" else PEER_INPUT
TOKEN = "bench-viewer"


@dataclass
class Deployment:
    """A started system: its processes and where its output goes."""

    system: str
    processes: list[SystemProcess]
    output: str
    app_id: str
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        for p in self.processes:
            p.stop()


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


_TABLES: dict[str, list[str]] = {}


def table_names(stages: str) -> list[str]:
    """The tables a worker with these stages declares (asked of the app itself, once per stage set)."""
    if stages not in _TABLES:
        code = ("from app.worker import load_stages; app = load_stages(); "
                "print(' '.join(sorted(t.name for t in app.tables.values())))")
        env = {**os.environ, "APP_ID": "bench-probe", "STAGES": stages}
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout
        _TABLES[stages] = out.split()
    return _TABLES[stages]


def declare_app_topics(bootstrap: str, app_id: str, stages: str, partitions: int = 8) -> None:
    """Create the worker's changelog and assignor topics before it starts.

    A worker that creates them itself can join its group before the broker's metadata lists the
    topics it just created; Faust then ignores them and the worker sits idle until the next metadata
    refresh (5 minutes). Declaring them up front keeps every run's start-up the same.
    """
    changelogs = [f"{app_id}-{name}-changelog" for name in table_names(stages)]
    kafka.create_topics(bootstrap, changelogs, partitions, {t: {"cleanup.policy": "compact"} for t in changelogs})
    kafka.create_topics(bootstrap, [f"{app_id}-__assignor-__leader"], 1)


def worker_env(bootstrap: str, app_id: str, data_dir: Path, web_port: int, stages: str = "") -> dict[str, str]:
    env = {"KAFKA_BOOTSTRAP": bootstrap, "APP_ID": app_id, "DATA_DIR": str(data_dir), "WEB_PORT": str(web_port),
           "WEB_HOST": "127.0.0.1", "API_TOKENS": f"{TOKEN}=viewer", "TOPIC_PARTITIONS": "8",
           "LOG_LEVEL": "warning",
           # The bench's reservations are days old, so the expiry sweep (every 30 s by default)
           # releases them: availability records made by a timer, not by the load, which used to
           # end a throughput run 20-35 s late whenever the sweep fell inside its idle wait (the
           # "half-CPU runs" of BENCHMARKS.md).
           "EXPIRY_SWEEP_INTERVAL": "3600"}
    if stages:
        env["STAGES"] = stages
    return env


def start(system: str, bootstrap: str, tag: str, workers: int = 1, cpus: set[int] | None = None,
          peer_input: str | None = None, volume: dict | None = None, catalogue: Catalogue | None = None) -> Deployment:
    """Start `system` (its input must already be loaded); `tag` makes its group, topics and dirs unique.
    `volume`: for `hops`, the pipeline run's records per raw event (bench.scenarios.pipeline_volume);
    `catalogue`: for `quix-stage`, whose master data it is (bench.workload.catalogue_for)."""
    base = _fresh(RUN_DIR / tag)
    if system == "hops":
        output, internal = f"bench.hops-out.{tag}", f"bench.hops-internal.{tag}"
        kafka.create_topics(bootstrap, [output, internal], 8)
        args = ["--bootstrap", bootstrap, "--group", f"g-{tag}", "--output", output, "--internal", internal,
                "--written", f"{volume['written_per_raw_event']:.4f}",
                "--read-back", f"{volume['read_back_per_raw_event']:.4f}"]
        proc = SystemProcess(system, python("bench.peers.hops", *args), {}, base / f"{system}.log", cpus=cpus)
        return Deployment(system, [proc.start()], output, f"g-{tag}")
    if system in PEERS:
        output = f"bench.deltas.{tag}"
        kafka.create_topics(bootstrap, [output], 8)
        args = ["--bootstrap", bootstrap, "--group", f"g-{tag}", "--output", output]
        if system == "quix-stage":
            side = f"bench.side.{tag}"
            kafka.create_topics(bootstrap, [side], 8)
            args += ["--side", side, "--skus", str(catalogue.n_skus),
                     "--locations", str(catalogue.n_stores + catalogue.n_dcs)]
        args += ["--input", peer_input or input_topic(system)]
        if system != "ceiling":
            args += ["--state", str(base / "state")]
        module = f"bench.peers.{system.replace('-', '_')}"
        proc = SystemProcess(system, python(module, *args), {}, base / f"{system}.log", cpus=cpus)
        return Deployment(system, [proc.start()], output, f"g-{tag}")
    stages = "positions,master" if system == "positions" else ""
    app_id = f"pipeline-{tag}"
    declare_app_topics(bootstrap, app_id, stages)
    procs = []
    for i in range(workers):
        port = 39300 + i
        env = worker_env(bootstrap, app_id, base / f"w{i}", port, stages)
        procs.append(SystemProcess(f"{system}-w{i}", python("app.cli", "worker"), env, base / f"w{i}.log",
                                   cpus=cpus if workers == 1 else None, web_port=port).start())
    return Deployment(system, procs, "inventory.availability", app_id)


def wait_started(d: Deployment, bootstrap: str, timeout: float = 180.0) -> float:
    """Pipeline workers: readyz 200 on every worker. Peers: the process is up (they have no probe)."""
    if d.system in (*PEERS, "hops"):
        time.sleep(0.5)
        if not d.processes[0].alive():
            raise RuntimeError(f"{d.system} exited; see {d.processes[0].log}")
        return time.time()
    return max(p.wait_ready(timeout) for p in d.processes)
