"""The measurements: drain throughput, open-loop latency, and changelog recovery of a fresh worker."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from dataclasses import dataclass

import orjson
from prometheus_client.parser import text_string_to_metric_families

from app import topics as t
from app.domain.keys import split_position_key
from bench import kafka, procs, systems, workload
from bench.measures import acks_by_second, broker_stalled, per_second, percentile
from bench.workload import Dataset

broker_cpu: procs.Sampler | None = None   # the bench broker's process, sampled by bench/run.py


def _broker_cpu_util(start: float, end: float) -> float | None:
    return broker_cpu.cpu_between(start, end) / max(end - start, 1e-3) if broker_cpu is not None else None

PEERS = systems.PEERS
# The pipeline's own topics that it reads back (its internal hops); the raw and master topics are its input.
READ_BACK = (t.MOVEMENTS, t.LEDGER, t.LINEAGE, t.RECON_CHECKS, t.RECON_RESULTS)
MASTER_CHANGELOGS = ("-master-items-changelog", "-master-locations-changelog", "-master-item-aliases-changelog")


@dataclass
class Prepared:
    """The data of one `make bench` invocation, generated once and shared by every system."""

    dataset: Dataset
    master: list[workload.Record]
    catalogue: workload.Catalogue
    limits: dict[str, int]   # raw events per system (a prefix of the data set: the slow ones get less)

    def for_system(self, system: str) -> Prepared:
        limit = self.limits.get(system)
        return self if limit is None else Prepared(self.dataset.prefix(limit), self.master, self.catalogue, {})


def _input_records(system: str, data: Prepared, movements: list[workload.Record] | None = None):
    if system == "pipeline":
        return data.master + data.dataset.raw
    if system == "hops":
        return data.dataset.raw
    rows = movements if movements is not None else data.dataset.movements
    if system == "positions":
        return data.master + rows
    if system == "quix-stage":   # keyed by SKU: Quix scopes state to the key, the stage holds a SKU's network
        return [(systems.input_topic(system), split_position_key(k.decode())[0].encode(), v) for _, k, v in rows]
    return [(systems.input_topic(system), k, v) for _, k, v in rows]


def prepare_input(system: str, bootstrap: str, data: Prepared, peer_loaded: set[str]) -> None:
    """Fresh pipeline topics (their names are fixed) or, for peers, the shared input loaded once."""
    if system in PEERS:
        topic = systems.input_topic(system)
        if topic not in peer_loaded:
            kafka.delete_topics(bootstrap, lambda t: t == topic)
            kafka.create_topics(bootstrap, [topic], 8)
            kafka.preload(bootstrap, _input_records(system, data))
            peer_loaded.add(topic)
        return
    kafka.reset_pipeline_topics(bootstrap, 8)
    kafka.preload(bootstrap, _input_records(system, data))


def wait_master_loaded(bootstrap: str, d: systems.Deployment, data: Prepared, timeout: float = 300.0) -> None:
    """Wait until the workers' global master tables hold every item and location.

    As in production, master data is loaded before the traffic: raw events that arrive before their
    item is in the table are dead-lettered (UNKNOWN_ITEM), which is not what is being measured.
    """
    wanted = {f"{d.app_id}-master-items-changelog": sum(1 for t, _, _ in data.master if t == "master.items"),
              f"{d.app_id}-master-locations-changelog": sum(1 for t, _, _ in data.master if t != "master.items")}
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(sum(kafka.end_offsets(bootstrap, t).values()) >= n for t, n in wanted.items()):
            break
        if not all(p.alive() for p in d.processes):
            raise RuntimeError(f"{d.system} exited; see {d.processes[0].log}")
        time.sleep(0.5)
    else:
        raise TimeoutError(f"master data not loaded after {timeout}s; see {d.processes[0].log}")
    # Written is not read: each worker's global tables read the changelogs back, which took 2.5-12.5
    # s from here with two workers; a fixed 2 s left one worker without its items in some two-worker
    # runs, and half its raw events were dead-lettered as UNKNOWN_ITEM (the "cut short" runs of
    # BENCHMARKS.md). Ask each worker for every location and every 100th item, through its master
    # views, until all are there; then until it has applied the whole of its master changelogs
    # (stock_sync_master_data_behind): a fixed 2 s more left the worker still applying the rest in
    # the first seconds of a latency point, seconds of latency that came from the harness.
    probes = [f"/v1/master/locations/{orjson.loads(v)['location_id']}" for t, _, v in data.master
              if t != "master.items"]
    probes += [f"/v1/master/items/{orjson.loads(v)['sku']}" for t, _, v in data.master if t == "master.items"][::100]
    for worker in d.processes:
        missing = probes
        while missing:
            if time.time() > deadline:
                raise TimeoutError(f"{worker.name}: master data not read back after {timeout}s, e.g. {missing[0]}")
            missing = [path for path in missing if worker.http_status(path, systems.TOKEN) != 200]
            if missing:
                time.sleep(0.2)
    for worker in d.processes:
        while (behind := _master_data_behind(worker)) != 0:
            if time.time() > deadline:
                raise TimeoutError(f"{worker.name}: master data changes still to apply after {timeout}s: {behind}")
            time.sleep(0.2)


def _master_data_behind(worker: procs.SystemProcess) -> float | None:
    for family in text_string_to_metric_families(worker.http_text("/metrics") or ""):
        if family.name == "stock_sync_master_data_behind":
            return family.samples[0].value
    return None


def _profile(pid: int, out: str, duration: float) -> subprocess.Popen:
    """py-spy on `pid` for `duration` s, 50 samples a second unless BENCH_PROFILE_RATE says otherwise
    (a single drain of a few seconds needs more to tell functions of ~1 % apart). BENCH_PROFILE_IDLE=1
    keeps the samples of threads that wait (the event loop in `select`): where a worker that has
    work waiting still idles."""
    spy = Path(sys.executable).with_name("py-spy")
    rate = os.environ.get("BENCH_PROFILE_RATE", "50")
    fmt = "raw" if out.endswith(".txt") else "flamegraph"  # raw: collapsed stacks, for self-time tables
    return subprocess.Popen([str(spy) if spy.exists() else "py-spy", "record", "--pid", str(pid), "--output", out,
                             "--format", fmt, "--duration", str(int(duration)), "--rate", rate, "--nonblocking",
                             *(["--idle"] if os.environ.get("BENCH_PROFILE_IDLE") == "1" else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stage_batches(d: systems.Deployment) -> dict:
    """Per stage, summed over the workers: micro-batches, records, and the seconds spent applying
    them and handing their outputs to the producer, from the workers' /metrics
    (stock_sync_stage_batch_*)."""
    stages: dict[str, dict[str, float]] = {}
    for worker in d.processes:
        for family in text_string_to_metric_families(worker.http_text("/metrics") or ""):
            if family.name not in ("stock_sync_stage_batch_records", "stock_sync_stage_batch_seconds"):
                continue
            for sample in family.samples:
                figures = stages.setdefault(sample.labels["stage"],
                                            {"batches": 0, "records": 0, "apply_s": 0.0, "send_s": 0.0})
                if family.name.endswith("records") and sample.name.endswith("_count"):
                    figures["batches"] += int(sample.value)
                elif family.name.endswith("records") and sample.name.endswith("_sum"):
                    figures["records"] += int(sample.value)
                elif family.name.endswith("seconds") and sample.name.endswith("_sum"):
                    figures[f"{sample.labels['phase']}_s"] += sample.value
    return stages


def pipeline_volume(bootstrap: str, app_id: str, raw_events: int) -> dict:
    """What a pipeline run cost in Kafka records per raw event, read from the topics' end offsets
    after it: records written (every topic but its raw and master input, master changelogs excluded)
    and, of those, records read back (its internal hops). The master stage's location-change control
    records (one per location and partition of inventory.movements) are counted in: ~1 % here."""
    topics = kafka.list_topics(bootstrap)
    inputs = {*t.RAW_TOPICS, t.MASTER_ITEMS, t.MASTER_LOCATIONS, t.ERP_SNAPSHOTS}
    contract = {s.name for s in t.TOPIC_SPECS}
    mine = [n for n in topics if (n in contract and n not in inputs)
            or (n.startswith(f"{app_id}-") and n.endswith("-changelog") and not n.endswith(MASTER_CHANGELOGS))]
    counts = {n: sum(kafka.end_offsets(bootstrap, n).values()) for n in mine}
    written = sum(counts.values())
    read_back = sum(counts.get(n, 0) for n in READ_BACK)
    return {"raw_events": raw_events, "written_per_raw_event": written / raw_events,
            "read_back_per_raw_event": read_back / raw_events,
            "by_topic": {n.removeprefix(f"{app_id}-"): c for n, c in sorted(counts.items()) if c}}


ALL_STAGES_OUTPUTS = (t.CHANNEL_AVAILABILITY, t.POSTINGS)


def throughput(system: str, bootstrap: str, data: Prepared, tag: str, workers: int, cpus: set[int] | None,
               peer_loaded: set[str], idle: float | None = None, timeout: float = 900.0,
               profile: str | None = None, volume: dict | None = None) -> dict:
    """Pre-load, start, and time from the first to the last output record (and from process start).
    `volume`: the pipeline's (`pipeline_volume`), which the same-hops floor (`hops`) replays."""
    data = data.for_system(system)
    expected = len(data.dataset.movements) if system in ("ceiling", "quix") else 1
    # The peers doing bench.domain's job: the exact output count is known. The stage's is not
    # (duplicates, dead letters, follow-ups), so it ends when no output came for a while; long
    # enough to ride out a busy box.
    idle = idle or (8.0 if system in PEERS or system == "hops" else 20.0)
    if system in PEERS:
        prepare_input(system, bootstrap, data, peer_loaded)
        d = systems.start(system, bootstrap, tag, workers=workers, cpus=cpus, catalogue=data.catalogue)
    elif system == "hops":
        if volume is None:
            raise ValueError("the same-hops floor replays a pipeline run's volume: run `pipeline` before `hops`")
        kafka.reset_pipeline_topics(bootstrap, 8)
        kafka.preload(bootstrap, _input_records(system, data))
        d = systems.start(system, bootstrap, tag, workers=workers, cpus=cpus, volume=volume)
    else:  # master data first, then the pre-loaded traffic once the workers hold it
        kafka.reset_pipeline_topics(bootstrap, 8)
        kafka.preload(bootstrap, data.master)
        d = systems.start(system, bootstrap, tag, workers=workers, cpus=cpus)
    # The pipeline is done when its last stage is: the position stage's availability comes first,
    # the channel sums and the finance postings behind it (ALL_STAGES_OUTPUTS).
    collector = kafka.Collector(bootstrap, [d.output, *(ALL_STAGES_OUTPUTS if system == "pipeline" else ())])
    collector.start()
    profiler = None
    try:
        if system in ("positions", "pipeline"):
            systems.wait_started(d, bootstrap)
            wait_master_loaded(bootstrap, d, data)
            kafka.preload(bootstrap, _input_records(system, data)[len(data.master):])
        started = d.processes[0].started_at
        if profile:  # steady state only: from the first output on
            while not collector.result.count and time.time() - started < timeout:
                time.sleep(0.05)
            profiler = _profile(d.processes[0].proc.pid, profile, 30)
        collector.wait_idle(idle, timeout, at_least=expected)
        result = collector.stop()
    finally:
        if profiler is not None:
            profiler.wait(timeout=120)
        d.stop()
    primary = result.by_topic.get(d.output)
    if not primary:
        raise RuntimeError(f"{system}: no output; see {d.processes[0].log}")
    count, first_ms, last_of_output_ms = primary
    first, last = first_ms / 1000, result.last_ts / 1000
    drain = max(last - first, 1e-3)
    cpu = sum(p.sampler.cpu_between(first, last) for p in d.processes)
    out = {
        "system": system, "workers": workers, "outputs": count,
        "inputs": len(data.dataset.raw) if system in ("pipeline", "hops") else len(data.dataset.movements),
        "drain_s": drain, "outputs_per_s": count / drain, "wall_from_start_s": last - started,
        "cpu_s": cpu, "cpu_util": cpu / drain, "broker_cpu_util": _broker_cpu_util(first, last), "kernel_share": d.processes[0].sampler.system_share(first, last), "peak_rss_mb": sum(p.sampler.peak_rss() for p in d.processes) / 2**20,
    }
    out["inputs_per_s"] = out["inputs"] / drain
    out["outputs_per_cpu_s"] = count / cpu if cpu else None
    if system == "pipeline":
        out["volume"] = pipeline_volume(bootstrap, d.app_id, out["inputs"])
        # Up to 2026-12-02 the pipeline's drain ended at its last availability record, while the
        # channel and finance stages still had a backlog: kept for comparison with those figures.
        availability_drain = max(last_of_output_ms / 1000 - first, 1e-3)
        out["availability_drain_s"] = availability_drain
        out["inputs_per_s_to_last_availability"] = out["inputs"] / availability_drain
        out["last_by_topic_s"] = {topic: round(seen[2] / 1000 - first, 3) for topic, seen in result.by_topic.items()}
    elif system == "hops":
        out["volume"] = volume
    return out


def _tagged_movements(movements: list[workload.Record], count: int) -> list[workload.Record]:
    """`count` movements, cycling the data set with new movement ids so no repeat is a duplicate."""
    out = []
    for i in range(count):
        topic, key, value = movements[i % len(movements)]
        lap = i // len(movements)
        if lap:
            value = value.replace(b'"movement_id":"', b'"movement_id":"lap%d-' % lap, 1)
        out.append((topic, key, value))
    return out


def _movement_id(value: bytes) -> str | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    cause = doc.get("cause")
    return cause["movement_id"] if cause else doc.get("movement_id")


def _source_event_id(value: bytes) -> str | None:
    try:
        return orjson.loads(value)["cause"]["source_event_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def latency(system: str, bootstrap: str, data: Prepared, tag: str, workers: int, cpus: set[int] | None,
            rate: float, seconds: float, warmup: float = 0.2, profile: str | None = None) -> dict:
    """Open-loop load at `rate` inputs/s for `seconds`; latency = output record ts − input record ts.
    `profile`: py-spy the first worker while the load runs (where a worker's time goes at a steady
    rate, which a drain's profile does not show: there every fetch and batch is full).

    Pipeline: raw record → availability record, matched via cause.source_event_id. Position stage
    and peers: movement → its availability record or delta, matched via the movement id.
    """
    # The harness shares a core with the broker: at most 300,000 records per point (fast systems get
    # a shorter window at their rate).
    count = max(1, min(int(rate * seconds), 300_000))
    if system == "pipeline":
        extra = workload.raw_events(data.catalogue, count, seed=hash(tag) % 10_000 + 100)
        feed = extra
    else:
        feed = _input_records(system, data, _tagged_movements(data.dataset.movements, count))
    if system in PEERS:
        source_topic = f"bench.latency.{tag}"
        kafka.create_topics(bootstrap, [source_topic], 8)
        feed = [(source_topic, k, v) for _, k, v in feed]
        d = systems.start(system, bootstrap, tag, workers=workers, cpus=cpus, peer_input=source_topic,
                          catalogue=data.catalogue)
    else:
        kafka.reset_pipeline_topics(bootstrap, 8)
        kafka.preload(bootstrap, data.master)
        if system == "positions":
            feed = feed[len(data.master):]
        d = systems.start(system, bootstrap, tag, workers=workers, cpus=cpus)
    extract = _source_event_id if system == "pipeline" else _movement_id
    collector = kafka.Collector(bootstrap, [d.output], extract=extract)
    collector.start()
    if system == "pipeline":
        first = workload.raw_events(data.catalogue, 1, seed=9_999)
    else:
        topic, key, value = feed[0]
        first = [(topic, key, value.replace(b'"movement_id":"', b'"movement_id":"warmup-', 1))]
    try:
        systems.wait_started(d, bootstrap)
        if system not in PEERS:
            wait_master_loaded(bootstrap, d, data)
        collector.ready.wait(30)
        # The clock starts once the system has answered one record: it has its partitions and is warm.
        kafka.preload(bootstrap, first)
        if not collector.wait_idle(0.5, timeout=120, at_least=1):
            raise RuntimeError(f"{system}: no answer to the warm-up record; see {d.processes[0].log}")
        profiler = _profile(d.processes[0].proc.pid, profile, min(seconds, 30)) if profile else None
        probe, cores = kafka.ProduceProbe(bootstrap), procs.CoreSampler()
        probe.start()
        cores.start()
        started, ended, acked = kafka.produce_at_rate(bootstrap, feed, rate)
        probe.stop()
        cores.stop()
        collector.wait_idle(5.0, timeout=600, at_least=1)
        result = collector.stop()
        batches = stage_batches(d) if system == "pipeline" else None
        cpu = sum(p.sampler.cpu_between(started, ended) for p in d.processes)
        rss = sum(p.sampler.peak_rss() for p in d.processes) / 2**20
        if profiler is not None:
            profiler.wait(timeout=120)
    finally:
        d.stop()
    topics = sorted({t for t, _, _ in feed})
    if system == "pipeline":
        sent = kafka.read_timestamps(bootstrap, topics, workload.source_event_id)
    else:
        sent = kafka.read_timestamps(bootstrap, topics, lambda _t, v: _movement_id(v))
    cutoff = (started + warmup * (ended - started)) * 1000
    lat = [ts - sent[i] for i, ts in result.ids if i in sent and sent[i] >= cutoff]
    if not lat:
        raise RuntimeError(f"{system}: no latency samples; see {d.processes[0].log}")
    probes, probes_by_second = probe.between(started, ended), probe.by_second(started, ended)
    inputs_by_second = acks_by_second(acked, started, ended)
    return {"system": system, "workers": workers, "rate": rate, "offered_s": ended - started,
            "achieved_rate": count / max(ended - started, 1e-3), "samples": len(lat),
            "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
            "max_ms": max(lat), "mean_ms": statistics.fmean(lat),
            # behind_s > 1: the system could not keep up with the offered rate
            "behind_s": (result.last_ts / 1000 - ended) if result.last_ts else None, "cpu_util": cpu / max(ended - started, 1e-3),
            "broker_cpu_util": _broker_cpu_util(started, ended),
            "broker_kernel_share": broker_cpu.system_share(started, ended) if broker_cpu is not None else None,
            # Was it the pipeline or a starved broker? A produce round trip from the harness, and
            # each core's busy and stolen share (the broker and the harness share one core).
            "broker_probe_p50_ms": percentile(probes, 50) if probes else None,
            "broker_probe_max_ms": max(probes) if probes else None,
            "broker_stalled": broker_stalled(probes_by_second, inputs_by_second),
            "input_ack_max_ms": max((max(inputs) for inputs in inputs_by_second if inputs), default=None),
            "cores": cores.shares_between(started, ended),
            "per_second": per_second(result.ids, sent, started, ended, probes_by_second,
                                     worker_cpu=lambda at: _tree_cpu_at(d, at), inputs_by_second=inputs_by_second),
            "input_ack_p99_ms": percentile([1000 * a for _, a in acked], 99) if acked else None,
            "peak_rss_mb": rss, **({"stage_batches": batches} if batches else {})}


def _tree_cpu_at(d: systems.Deployment, when: float) -> float | None:
    used = [p.sampler.cpu_at(when) for p in d.processes]
    return None if None in used else sum(used)


def _position_records(changelog: str, catalogue: workload.Catalogue, count: int, partitions: int = 8):
    """`count` positions in the table's own changelog format: key b"SKU@LOC", value Position JSON, in
    the SKU's partition (the table is partitioned like inventory.movements, by SKU)."""
    from app.domain.keys import position_key
    from app.partitions import sku_partition

    template = workload.position_template()
    locations = catalogue.stores() + catalogue.dcs()
    n = 0
    for loc in locations:
        for sku in catalogue.skus():
            if n >= count:
                return
            n += 1
            yield changelog, position_key(sku, loc).encode(), template.replace("@SKU@", sku).replace(
                "@LOC@", loc).encode(), sku_partition(sku, partitions)


def recovery(bootstrap: str, data: Prepared, tag: str, count: int, cpus: set[int] | None,
             timeout: float = 900.0) -> dict:
    """A fresh worker (empty data dir) restores `count` positions from the changelog and serves them."""
    from app.domain.keys import position_key
    from app.models.canonical import Movement

    kafka.reset_pipeline_topics(bootstrap, 8)
    kafka.preload(bootstrap, data.master)
    app_id = f"pipeline-{tag}"
    changelog = f"{app_id}-positions-changelog"
    kafka.create_topics(bootstrap, [changelog], 8, {changelog: {"cleanup.policy": "compact"}})
    loaded = kafka.preload(bootstrap, _position_records(changelog, data.catalogue, count))
    size_mb = None
    d = systems.start("pipeline", bootstrap, tag, cpus=cpus)
    worker = d.processes[0]
    sku, loc = data.catalogue.skus()[-1], data.catalogue.stores()[0]
    try:
        t0 = worker.started_at
        ready = worker.wait_ready(timeout)
        lookup = None
        deadline = time.time() + 60
        while time.time() < deadline:
            if worker.http_status(f"/v1/positions/{sku}/{loc}", systems.TOKEN) == 200:
                lookup = time.time()
                break
            time.sleep(0.1)
        # Serve through the stream too: one more movement must build on the restored version 5.
        probe = Movement(movement_id=f"bench:probe-{tag}:1:line", movement_type="RECEIPT", sku=sku,
                         location_id=loc, quantity=1, source_system="wms", source_event_id=f"probe-{tag}",
                         source_line="1", correlation_id="probe", occurred_at="2026-11-27T10:00:00Z",
                         business_date="2026-11-27", unit_cost="7.00")
        collector = kafka.Collector(bootstrap, ["inventory.availability"], extract=lambda v: str(
            orjson.loads(v).get("version")))
        collector.start()
        collector.ready.wait(30)
        kafka.preload(bootstrap, [("inventory.movements", position_key(sku, loc).encode(),
                                   probe.model_dump_json().encode())])
        collector.wait_idle(1.0, timeout=120, at_least=1)
        seen = collector.stop()
        probed = seen.last_seen if seen.count else None
        rss = worker.sampler.peak_rss() / 2**20
        cpu = worker.sampler.samples[-1][1] if worker.sampler.samples else None
    finally:
        d.stop()
    return {"positions": loaded, "ready_s": ready - t0, "lookup_s": (lookup - t0) if lookup else None,
            "probe_s": (probed - t0) if probed else None,
            "probe_version": int(seen.ids[-1][0]) if seen.ids else None,
            "positions_per_s": loaded / (ready - t0), "peak_rss_mb": rss, "cpu_s": cpu, "changelog_mb": size_mb}
