"""One chaos run: workers, phased production with barriers, faults at chosen points, final verdict.

The driver produces phase k while faults happen, then waits (the barrier) until the pipeline has
applied every movement of phases <= k, as the tracker sees on `inventory.availability`, before it
produces phase k+1. At the end it reads every raw topic back (with the phase headers), replays it
through the oracle in the order each partition holds it, reads every output, and compares.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.broker import LocalBroker
from app.kafka_io import create_topics
from app.settings import REPO_ROOT
from tests.chaos.cluster import Cluster
from tests.chaos.kafka_tools import (
    AVAILABILITY, CHANNEL_AVAILABILITY, DLQ, JOURNAL_BATCHES, POSTINGS, LoopThread, Producer, Tracker, count_keys, group_by_partition_order, group_lag,
    lagging, read_to_end,
)
from tests.chaos.oracle import MovementRef, Oracle, RawInput, master_from
from tests.chaos.verify import (BUCKETS, Verdict, channel_forensics, channel_mismatches, closed_days, compare,
                                day_batch_mismatches)
from tests.chaos.workload import RAW_TOPICS, ChaosWorkload, RawRecord
from tests.e2e.harness import VIEWER

CHAOS_HOME = REPO_ROOT / ".run" / "chaos"
# Topics the pipeline's agents consume: a partition of these must keep moving while it has a lag.
INPUT_TOPICS = (*RAW_TOPICS, "inventory.movements", "internal.finance-ledger")
RESULTS = CHAOS_HOME / "results"

# A fault is a callable run by the driver when the phase's production reaches a fraction.
FaultPlan = list[tuple[float, str, Callable[["ChaosRun"], None]]]


class BarrierTimeout(AssertionError):
    pass


@dataclass
class ChaosRun:
    name: str
    broker: LocalBroker
    seed: int = 11
    n_skus: int = 40
    rate: float = 80.0
    barrier_timeout: float = 240.0
    worker_env: dict[str, str] = field(default_factory=dict)
    static_membership: bool = False   # each worker keeps its group identity across restarts

    def __post_init__(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.token = uuid.uuid4().hex[:6].upper()
        self.namespace = f"C{self.token}"
        self.app_id = f"chaos-{self.name}-{self.token.lower()}"
        self.run_dir = CHAOS_HOME / "runs" / f"{self.name}-{stamp}-{self.token.lower()}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.loop = LoopThread()
        # Faust logs which step of a partition's event path is stuck (no fetch, stream idle, no
        # commit) after STREAM_PROCESSING_TIMEOUT seconds; 300 by default, too late for a test.
        env = {"STREAM_PROCESSING_TIMEOUT": "30", **self.worker_env}
        self.cluster = Cluster(self.broker, self.run_dir, self.app_id, env=env,
                               static_membership=self.static_membership)
        self.workload = ChaosWorkload(self.namespace, seed=self.seed, n_skus=self.n_skus)
        self.producer = Producer(self.broker.bootstrap, self.loop)
        self.tracker: Tracker | None = None
        self.phase_oracle: Oracle | None = None
        self.generated: list[RawRecord] = []
        self.barriers: list[dict] = []
        self.notes: list[str] = []
        self.figures: dict = {}
        self.extra_figures: dict = {}  # a scenario's own figures (e.g. the soak's), saved with the run's
        self.verdict: Verdict | None = None
        self.began = time.monotonic()
        self.stuck_after = 45.0
        self._commits: dict[tuple[str, int], tuple[int, float]] = {}
        self._last_watch = 0.0

    # --- set-up ----------------------------------------------------------------------------------
    def setup(self, workers: list[str]) -> None:
        self.loop.run(create_topics(self.broker.bootstrap, 8), 120)
        self.loop.run(declare_changelogs(self.broker.bootstrap, self.app_id, 8), 120)
        for name in workers:
            self.cluster.start(name)
        master = self.workload.master_records()
        self.producer.send(master)
        self._wait_master(len(self.workload.skus), len(self.workload.locations))
        self.phase_oracle = Oracle(*master_from(master))
        self.tracker = Tracker(self.broker.bootstrap, self.loop, self.namespace)
        self._run_phase(0, self.workload.opening_stock(), [], rate=0)

    def _wait_master(self, n_items: int, n_locations: int, timeout: float = 120.0) -> None:
        """Master data reaches every worker's global tables before the first movement needs it.

        Asked of each worker through GET /v1/master/... when the build serves it; otherwise the
        master changelogs must hold every key, plus a grace period for the global tables.
        """
        deadline = time.monotonic() + timeout
        paths = ([f"/v1/master/items/{sku}" for sku in self.workload.skus]
                 + [f"/v1/master/locations/{loc}" for loc in self.workload.locations])
        missing: dict[str, int] = {}
        while time.monotonic() < deadline:
            served = [self._get(name, paths[0])[0] for name in self.cluster.alive()]
            if any(status not in (200, 404) for status in served) or (404 in served and not self._has_view(
                    self.cluster.alive()[0], "/v1/master/items/")):
                break  # this build has no master view: fall back to the changelogs
            missing = {name: sum(self._get(name, p)[0] != 200 for p in paths) for name in self.cluster.alive()}
            if not any(missing.values()):
                return
            time.sleep(1.0)
        else:
            raise BarrierTimeout(f"master data not in every worker's global tables after {timeout}s: "
                                 f"missing per worker {missing}\n{self.cluster.logs()}")
        items = f"{self.app_id}-master-items-changelog"
        locations = f"{self.app_id}-master-locations-changelog"
        while time.monotonic() < deadline:
            got_items = self.loop.run(count_keys(self.broker.bootstrap, items), 60)
            got_locations = self.loop.run(count_keys(self.broker.bootstrap, locations), 60)
            if got_items >= n_items and got_locations >= n_locations:
                time.sleep(3.0)  # the changelog is written; let every worker's global table read it
                return
            time.sleep(1.0)
        raise BarrierTimeout(f"master data not in the master changelogs after {timeout}s\n{self.cluster.logs()}")

    def _get(self, name: str, path: str) -> tuple[int, object]:
        request = urllib.request.Request(self.cluster.workers[name].url + path,
                                         headers={"Authorization": f"Bearer {VIEWER}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None

    def _has_view(self, name: str, prefix: str) -> bool:
        """Does this build serve the view? An unknown key answers a JSON 404, a missing route does not."""
        status, body = self._get(name, f"{prefix}{self.namespace}-NOSUCH")
        return status == 404 and isinstance(body, dict)

    # --- phases ----------------------------------------------------------------------------------
    def phase(self, k: int, n_events: int, faults: FaultPlan = (), *, final: bool = False) -> None:
        self._run_phase(k, self.workload.phase_records(k, n_events, final=final), list(faults), rate=self.rate)

    def _run_phase(self, k: int, records: list[RawRecord], faults: FaultPlan, rate: float) -> None:
        self.generated.extend(records)
        for record in records:
            self.phase_oracle.feed(RawInput(record.topic, -1, -1, record.key, record.value, k, record.bad))
        future, progress = self.producer.start_sending(records, rate)
        for fraction, label, fault in sorted(faults, key=lambda f: f[0]):
            while progress.sent < fraction * progress.total and not future.done():
                time.sleep(0.05)
            self.notes.append(f"phase {k}: {label} at {progress.sent}/{progress.total} records "
                              f"(t={self.cluster.elapsed():.0f}s)")
            fault(self)
        future.result()
        self.barrier(k)

    def barrier(self, k: int, stall: float = 150.0) -> float:
        """Wait until every key has reached the version the oracle expects after phase k.

        If the pipeline stops emitting for `stall` seconds with keys still behind (an output that
        will never come), carry on: the final key-by-key comparison says what is missing and why.
        `stall` is well above the watchdog's 45 s, so a stuck partition is restarted (and counted as
        a fault) before the barrier gives up: giving up early would let the next phase overtake
        movements the workload orders across phases.
        A pipeline that makes no progress at all before `barrier_timeout` fails the run here.
        """
        expected = self.phase_oracle.result.versions()
        began = time.monotonic()
        deadline = began + self.barrier_timeout
        behind = self.tracker.behind(expected)
        while behind and time.monotonic() < deadline:
            time.sleep(0.5)
            self.watchdog()
            behind = self.tracker.behind(expected)
            with self.tracker.lock:
                quiet = time.monotonic() - max(self.tracker.seen.last_output_at, began)
            if behind and quiet > stall and len(behind) <= 0.05 * len(expected):
                self.notes.append(f"phase {k}: barrier gave up after {stall:.0f}s without output with "
                                  f"{len(behind)} keys behind: {sorted(behind.items())[:5]}")
                break
        took = time.monotonic() - began
        self.barriers.append({"phase": k, "seconds": round(took, 1), "keys": len(expected),
                              "movements": len(self.phase_oracle.result.applied), "keys_behind": len(behind)})
        if behind and time.monotonic() >= deadline:
            seen = self.tracker.snapshot()
            try:
                lag = lagging(self.loop.run(group_lag(self.broker.bootstrap, self.app_id, INPUT_TOPICS), 60))
            except Exception as exc:  # diagnostics only
                lag = {"error": repr(exc)}
            message = (f"phase {k}: {len(behind)} keys still behind after {took:.0f}s, e.g. "
                       f"{sorted(behind.items())[:10]}; outputs seen (availability, posting ids, dlq)={seen}; "
                       f"alive={self.cluster.alive()}; consumer group lag {lag}; faults so far: {self.notes}")
            (self.run_dir / "failure.txt").write_text(message + "\n")
            raise BarrierTimeout(f"{message}\n{self.cluster.logs()}")
        return took

    # --- liveness (what an orchestrator's liveness probe does in production) -----------------------
    def watchdog(self) -> None:
        """Restart a worker when an input partition it should consume makes no progress.

        Faust sometimes leaves a partition unconsumed after a rebalance (faust-streaming#629 and
        kin): the worker is "ready" but never fetches it. Production needs a liveness probe for
        that; this is the probe's rule: committed offset not moving for `stuck_after` seconds while
        the partition has a lag and nothing is emitted. Each restart is recorded as a fault.
        """
        now = time.monotonic()
        if now - self._last_watch < 5.0:
            return
        self._last_watch = now
        for name in self.cluster.crashed():
            # A restart policy, as any orchestrator has: the worker exited on its own.
            code = self.cluster.workers[name].proc.returncode
            self.notes.append(f"supervisor: {name} exited with code {code}; restarting it")
            self.cluster.start(name, kind="crash_restart")
            self.cluster.faults[-1].extra = {"exit_code": code}
        if not self.cluster.alive():
            return
        try:
            lag = self.loop.run(group_lag(self.broker.bootstrap, self.app_id, INPUT_TOPICS), 30)
        except Exception:  # the broker may be restarting: ask again next time
            return
        stuck = []
        for topic, parts in lag.items():
            for p, (committed, end) in parts.items():
                seen = self._commits.get((topic, p))
                if seen is None or seen[0] != committed or end <= max(committed, 0):
                    self._commits[(topic, p)] = (committed, now)
                elif now - seen[1] >= self.stuck_after:
                    stuck.append((topic, p, end - max(committed, 0)))
        with self.tracker.lock:
            quiet = now - self.tracker.seen.last_output_at
        if not stuck or quiet < self.stuck_after:
            return
        victim = self._owner_of(stuck) or max(self.cluster.alive(), key=lambda n: self.cluster.workers[n].proc.pid)
        self.notes.append(f"liveness: {len(stuck)} partitions without progress for {self.stuck_after:.0f}s "
                          f"(e.g. {stuck[:4]}); restarting {victim}")
        self.cluster.stop(victim, record=False)
        self.cluster.start(victim, kind="liveness_restart")
        self.cluster.faults[-1].extra = {"stuck_partitions": [f"{t}[{p}] lag {n}" for t, p, n in stuck[:10]]}
        self._commits.clear()

    def _owner_of(self, stuck: list[tuple[str, int, int]]) -> str | None:
        """The worker whose /v1/stats lists one of the stuck partitions, when the build serves it."""
        wanted = {(t, p) for t, p, _ in stuck}
        for name in self.cluster.alive():
            status, body = self._get(name, "/v1/stats")
            if status == 200 and isinstance(body, dict):
                rows = body.get("consumer_lag", {}).get("partitions", [])
                if any((r.get("topic"), r.get("partition")) in wanted for r in rows):
                    return name
        return None

    # --- faults (called from fault plans) ---------------------------------------------------------
    def kill_and_restart(self, name: str, down_for: float = 2.0, *, fresh: bool = False) -> None:
        self.cluster.kill(name)
        time.sleep(down_for)
        self.cluster.start(name, fresh=fresh, kind="restart_after_sigkill" + ("_empty_dir" if fresh else ""))

    def stop_and_restart(self, name: str) -> None:
        """SIGTERM (drain, commit, leave the group), then start the same worker on the same data dir."""
        self.cluster.stop(name)
        self.cluster.start(name, kind="restart_after_sigterm")

    def broker_outage(self, down_for: float) -> None:
        """The broker is gone for `down_for` seconds while the workers keep running."""
        self.producer.pause()
        alive_before = set(self.cluster.alive())
        try:
            began = time.monotonic()
            self.broker.stop()
            time.sleep(down_for)
            survived = set(self.cluster.alive())
            self.broker.start(timeout=180)
            back = time.monotonic()
        finally:
            self.producer.resume()
        resumed = self.wait_progress(back, timeout=180)
        fault = self.cluster._record("broker_outage", "broker", f"down {back - began:.1f}s", back - began)
        fault.extra = {"workers_alive_through_outage": sorted(survived), "workers_before": sorted(alive_before),
                       "resumed_after_s": None if resumed is None else round(resumed, 1)}

    def kill_many_and_restart(self, names: list[str], down_for: float = 2.0) -> None:
        for name in names:
            self.cluster.kill(name)
        time.sleep(down_for)
        for name in names:
            self.cluster.start(name, kind="restart_after_sigkill")

    def add_worker(self, name: str) -> None:
        self.cluster.start(name, fresh=True, kind="add_worker_empty_dir")

    def remove_worker(self, name: str) -> None:
        self.cluster.stop(name)

    def restart_broker(self, *, hard: bool = False, down_for: float = 0.0) -> None:
        self.producer.pause()
        phase_sent = not self.producer.sending   # a fault late in a phase can find it sent in full
        try:
            self.cluster.restart_broker(hard=hard, down_for=down_for)
        finally:
            self.producer.resume()
        if phase_sent and not self.tracker.behind(self.phase_oracle.result.versions()):
            # No input left and every position out: no output is due, and waiting for one only
            # added two minutes to a long run (thirty-first session, RELIABILITY.md §4).
            self.cluster.faults[-1].detail += "; nothing left to send or to apply: not timed"
            return
        resumed = self.wait_progress(time.monotonic(), timeout=120)
        self.cluster.faults[-1].detail += (f"; outputs resumed {resumed:.1f}s after the broker was back"
                                           if resumed is not None else "; no output within 120s")

    def wait_progress(self, since: float, timeout: float) -> float | None:
        deadline = since + timeout
        while time.monotonic() < deadline:
            with self.tracker.lock:
                last = self.tracker.seen.last_output_at
            if last > since:
                return last - since
            time.sleep(0.2)
        return None

    # --- the end ---------------------------------------------------------------------------------
    def finish(self, *, settle: float = 3.0, posting_timeout: float = 120.0,
               consume_timeout: float = 180.0, final_outputs_timeout: float = 90.0) -> Verdict:
        # Each posting the oracle expects, (movement, kind): a count of distinct posting ids could be
        # filled by optional ones while an expected one is still on its way.
        expected_postings = self.phase_oracle.result.expected_postings()
        deadline = time.monotonic() + posting_timeout
        while (self.tracker.expected_postings_seen(expected_postings) < len(expected_postings)
               and time.monotonic() < deadline):
            time.sleep(0.5)
            self.watchdog()
        self._wait_consumed(timeout=consume_timeout)
        quiet_since = time.monotonic()
        last = self.tracker.snapshot()
        while time.monotonic() - quiet_since < settle and time.monotonic() < deadline + 30:
            time.sleep(0.5)
            now = self.tracker.snapshot()
            if now != last:
                last, quiet_since = now, time.monotonic()
        final_outputs_after = self._wait_final_outputs(final_outputs_timeout)
        self.cluster.sample_rss("end")
        stalled = self._stalled_partitions()
        web = self.check_web_view()
        stops = {name: round(self.cluster.stop(name, record=False), 1) for name in self.cluster.alive()}
        self.tracker.stop()
        self.producer.close()

        bootstrap = self.broker.bootstrap
        raw = self.loop.run(read_to_end(bootstrap, RAW_TOPICS, raw_inputs=True, namespace=self.namespace), 300)
        availability, postings = self._read_run(AVAILABILITY), self._read_run(POSTINGS)
        dlq = self.loop.run(read_to_end(bootstrap, [DLQ]), 300)
        batches, channels = self._read_run(JOURNAL_BATCHES), self._read_run(CHANNEL_AVAILABILITY)

        oracle = Oracle(*master_from(self.workload.master_records()))
        result = oracle.feed_all(group_by_partition_order(raw))
        self.verdict = compare(result, raw, availability, postings, dlq)
        closed = closed_days(raw)
        for kind, items in [*day_batch_mismatches(closed, postings, batches).items(),
                            *channel_mismatches(availability, channels, self._locations()).items()]:
            self.verdict.add(kind, items)
        self.verdict.figures["day_batches"] = {
            "days_closed": len(closed), "records_out": len(batches),
            "distinct": len({b.value["batch_id"] for b in batches}),
            "late": len({b.value["batch_id"] for b in batches if b.value["late"]})}
        self.verdict.figures["channel_availability_records_out"] = len(channels)
        self.verdict.figures["day_batches_and_channels_final_after_s"] = final_outputs_after
        if web.get("mismatches"):
            self.verdict.add("web_view", web["mismatches"])
        if stalled:
            # A partition whose committed offset stays behind its end while the workers idle: the
            # pipeline stopped consuming it (a liveness failure, not a loss: a restart resumes it).
            self.verdict.add("partitions_not_consumed", [
                f"{topic}[{p}] lag {lag}" for topic, parts in sorted(stalled.items()) for p, lag in sorted(parts.items())])
        self.forensics = self._forensics(bootstrap_keys(self.verdict)) if self.verdict.mismatch_total else {}
        stale_channels = [*self.verdict.mismatches.get("channel_availability_not_final", []),
                          *self.verdict.mismatches.get("channel_availability_missing", [])]
        if stale_channels:
            try:
                network_changelog = self._read_run(f"{self.app_id}-sku-network-changelog")
                self.forensics["channels"] = channel_forensics(stale_channels, availability, channels,
                                                               network_changelog)
            except Exception as exc:
                self.forensics["channels"] = repr(exc)
        if self.verdict.mismatches.get("postings_missing"):
            try:
                self.forensics["postings"] = self._postings_forensics(self.verdict.mismatches["postings_missing"])
            except Exception as exc:
                self.forensics["postings"] = repr(exc)
        if self.verdict.mismatches.get("movements_lost"):
            self.verdict.figures["movements_lost_by_cause"] = self._classify_lost()
        self.loop.close()
        self.figures = {
            "run": self.name, "app_id": self.app_id, "namespace": self.namespace, "seed": self.seed,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - self.began, 1),
            "workers_started": len([f for f in self.cluster.faults if f.kind != "sigkill"]),
            "faults": [f.as_dict() for f in self.cluster.faults],
            "fault_notes": self.notes,
            "barriers": self.barriers,
            "worker_rss_kb": self.cluster.rss,
            "graceful_stop_s": stops,
            "web_view": {k: v for k, v in web.items() if k != "mismatches"},
            "producer": {"records_sent": len(self.generated)},
            "tracker_fetch_errors": self.tracker.errors,
            **self.verdict.figures,
            **self.extra_figures,
        }
        self._save()
        return self.verdict

    def _read_run(self, topic: str) -> list:
        """This run's records of an output topic, from its start to its end now."""
        return self.loop.run(read_to_end(self.broker.bootstrap, [topic], namespace=self.namespace), 300)

    def _locations(self) -> list[dict]:
        return master_from(self.workload.master_records())[1]

    def _wait_final_outputs(self, timeout: float) -> float | None:
        """Seconds until the closed days' batches cover every posting of those days (late postings
        go out LATE_BATCH_AFTER after the first of them) and every channel's last record adds up its
        locations' last availability (published at most every CHANNEL_PUBLISH_INTERVAL); None if
        they did not within `timeout`. The workers are stopped after this, so what they still owe
        has to be out by then."""
        closed, locations = closed_days(self.generated), self._locations()
        began = time.monotonic()
        read = self._read_run
        while True:
            if not day_batch_mismatches(closed, read(POSTINGS), read(JOURNAL_BATCHES)) and \
                    not channel_mismatches(read(AVAILABILITY), read(CHANNEL_AVAILABILITY), locations):
                return round(time.monotonic() - began, 1)
            if time.monotonic() - began > timeout:
                return None
            time.sleep(2.0)
            self.watchdog()

    def _wait_consumed(self, timeout: float) -> None:
        """Every input partition committed to its end, the watchdog restarting a stuck worker meanwhile
        (what the liveness probe does in production); what is still lagging after that is reported."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                behind = lagging(self.loop.run(group_lag(self.broker.bootstrap, self.app_id, INPUT_TOPICS), 30))
            except Exception:  # the broker may be slow to answer: ask again
                behind = {"?": {0: 1}}
            if not behind:
                return
            time.sleep(1.0)
            self.watchdog()

    def check_web_view(self, sample: int = 40) -> dict:
        """Cross-check the operators' position view (GET /v1/positions/{sku}/{location}), when served."""
        alive = self.cluster.alive()
        if not alive:
            return {"status": "no live worker"}
        if not self._has_view(alive[0], f"/v1/positions/{self.namespace}-NOWHERE/"):
            return {"status": "not served by this build"}
        expected = self.phase_oracle.result.positions
        mismatches = []
        keys = sorted(expected)[:: max(1, len(expected) // sample)][:sample]
        for i, key in enumerate(keys):
            sku, loc = key.rsplit("@", 1)
            status, body = self._get(alive[i % len(alive)], f"/v1/positions/{sku}/{loc}")
            position = body.get("position", body) if isinstance(body, dict) else {}
            got = {b: position.get(b) for b in BUCKETS}
            want = expected[key].buckets()
            if status != 200 or got != want:
                mismatches.append({"key": key, "status": status, "expected": want, "actual": got})
        return {"status": "compared", "keys": len(keys), "mismatches": mismatches}

    def _classify_lost(self) -> dict[str, int]:
        """Why each lost movement is missing, from the last positions-changelog value of its key:
        "applied_outputs_lost" (the position holds it, nothing downstream ever saw it) or
        "never_applied" (the position never got it although it is in inventory.movements)."""
        changelog = self._read_run(f"{self.app_id}-positions-changelog")
        movements = self._read_run("inventory.movements")
        latest = {r.key: r.value for r in changelog}
        in_topic = {(r.key, r.value.get("source_system"), r.value.get("source_event_id"), r.value.get("movement_type"))
                    for r in movements}
        counts: dict[str, int] = {}
        for item in self.verdict.mismatches["movements_lost"]:
            kind, rest = item["movement"].split(" ", 1)
            source, key = rest.split(" @ ")
            system, event_id = source.split(":", 1)
            applied = (latest.get(key) or {}).get("applied") or {}
            if any(mid.startswith(f"{system}:{event_id}:") for mid in applied):
                cause = "applied_outputs_lost"
            elif (key, system, event_id, kind) in in_topic:
                cause = "never_applied"
            else:
                cause = "never_reached_inventory_movements"
            item["cause"] = cause
            counts[cause] = counts.get(cause, 0) + 1
        return counts

    def _stalled_partitions(self, wait: float = 6.0) -> dict[str, dict[int, int]]:
        """Input partitions of the app's group that have a lag and make no progress for `wait` s."""
        try:
            first = self.loop.run(group_lag(self.broker.bootstrap, self.app_id, INPUT_TOPICS), 60)
            time.sleep(wait)
            second = self.loop.run(group_lag(self.broker.bootstrap, self.app_id, INPUT_TOPICS), 60)
        except Exception as exc:  # diagnostics only: never hide the verdict behind them
            self.notes.append(f"consumer group lag not available: {exc!r}")
            return {}
        stalled: dict[str, dict[int, int]] = {}
        for topic, parts in second.items():
            for p, (committed, end) in parts.items():
                before = first.get(topic, {}).get(p, (None, None))[0]
                if end > committed and before == committed:
                    stalled.setdefault(topic, {})[p] = end - committed
        return stalled

    def _forensics(self, keys: list[str], limit: int = 12) -> dict:
        """For keys that disagree: every movement record and every positions-changelog value, in order."""
        keys = keys[:limit]
        wanted = set(keys)
        movements = self._read_run("inventory.movements")
        changelog = self._read_run(f"{self.app_id}-positions-changelog")
        out: dict[str, dict] = {k: {"movements": [], "changelog": []} for k in keys}
        for r in movements:
            if r.key in wanted:
                out[r.key]["movements"].append(
                    f"p{r.partition}@{r.offset} {r.value.get('movement_type')} {r.value.get('source_system')}:"
                    f"{r.value.get('source_event_id')} role={r.value.get('role')}")
        for r in changelog:
            if r.key in wanted:
                applied = r.value.get("applied") or {}
                out[r.key]["changelog"].append(
                    f"p{r.partition}@{r.offset} v{r.value.get('version')} on_hand={r.value.get('on_hand')} "
                    f"reserved={r.value.get('reserved')} applied={len(applied)} last={list(applied)[-1:]}")
        return out

    def _postings_forensics(self, missing: list) -> dict:
        wanted = {m["movement"] for m in missing}
        ledger = self._read_run("internal.finance-ledger")
        found: dict = {w: [] for w in wanted}
        by_partition: dict = {}
        for r in ledger:
            by_partition.setdefault(r.partition, []).append(r.offset)
            value = r.value if isinstance(r.value, dict) else {}
            # a stage batch's entries come packed per partition (app/packs.py)
            entries = [json.loads(entry) for _key, entry in value["pack"]] if "pack" in value else [value]
            for entry in entries:
                m = (entry.get("applied") or {}).get("movement")
                if not m:
                    continue
                name = str(MovementRef(f"{m.get('sku')}@{m.get('location_id')}", m.get("source_system"),
                                       m.get("source_event_id"), m.get("movement_type")))
                if name in found:
                    found[name].append(f"p{r.partition}@{r.offset}")
        lag = self.loop.run(group_lag(self.broker.bootstrap, self.app_id, ["internal.finance-ledger"]), 60)
        return {"ledger_records_of_missing": found, "group_committed_end": lag,
                "ledger_offsets_per_partition": {p: (min(o), max(o), len(o)) for p, o in by_partition.items()}}

    def _save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        passed = self.verdict is not None and self.verdict.mismatch_total == 0
        self.figures["passed"] = passed
        path = RESULTS / f"{self.name}-{self.figures['started_at'].replace(':', '')}-{self.token.lower()}.json"
        details = {k: v[:50] for k, v in (self.verdict.mismatches if self.verdict else {}).items() if v}
        path.write_text(json.dumps({**self.figures, "mismatch_details": details,
                                    "forensics": getattr(self, "forensics", {})}, indent=2, default=str))
        with open(RESULTS / "history.jsonl", "a") as history:
            history.write(json.dumps({"run": self.name, "at": self.figures["started_at"], "passed": passed,
                                      "duration_s": self.figures["duration_s"],
                                      "mismatch_total": self.figures.get("mismatch_total"),
                                      "file": str(path.relative_to(REPO_ROOT))}) + "\n")
        self.figures_path = path

    def record_failure(self, exc: BaseException) -> None:
        """A run that could not reach its verdict still counts, as a failure, in the history."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        entry = {"run": self.name, "at": datetime.now(UTC).isoformat(timespec="seconds"), "passed": False,
                 "duration_s": round(time.monotonic() - self.began, 1), "mismatch_total": None,
                 "error": f"{type(exc).__name__}: {str(exc)[:400]}", "faults": [f.as_dict() for f in self.cluster.faults],
                 "notes": self.notes, "run_dir": str(self.run_dir.relative_to(REPO_ROOT))}
        with open(RESULTS / "history.jsonl", "a") as history:
            history.write(json.dumps(entry, default=str) + "\n")

    def abort(self) -> None:
        """Leave nothing running after a failed run; keep the logs."""
        try:
            if self.tracker is not None:
                self.tracker.stop()
        finally:
            self.cluster.kill_all()
            try:
                self.loop.close()
            except Exception:  # the loop may already be closed
                pass


def bootstrap_keys(verdict: Verdict) -> list[str]:
    """The keys a verdict's mismatches are about, most telling first."""
    keys: list[str] = []
    for kind in ("movements_lost", "positions", "availability_version_gaps", "movements_applied_twice",
                 "availability_version_conflicts", "postings_missing"):
        for item in verdict.mismatches.get(kind, []):
            key = item.get("key") if isinstance(item, dict) else None
            if key is None and isinstance(item, dict) and "movement" in item:
                key = item["movement"].rsplit(" @ ", 1)[-1]
            if key and key not in keys:
                keys.append(key)
    return keys


def changelog_tables() -> list[str]:
    """Names of the pipeline's tables, asked of the worker's own code in a child process."""
    code = "from app.worker import load_stages; import json; print(json.dumps([t.name for t in load_stages().tables.values()]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


async def declare_changelogs(bootstrap: str, app_id: str, partitions: int) -> list[str]:
    """Create the app's changelog topics before its first worker joins the group, as `make worker`
    does (app.worker.declare_topics), and wait until the broker's metadata lists them all.

    A worker creates them itself, but when its metadata does not show them yet at the first join,
    Faust's assignor skips them and then fails on a global table's missing changelog (KeyError in
    `_global_table_standby_assignments`), leaving the worker never ready.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    from app.connection import client_kwargs
    names = [f"{app_id}-{table}-changelog" for table in changelog_tables()]
    await create_topics(bootstrap, partitions, names)
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap))
    await admin.start()
    try:
        for _ in range(50):
            if set(names) <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return names


def fresh_broker(home: Path, port: int) -> LocalBroker:
    broker = LocalBroker(home=home, port=port, controller_port=port + 1)
    broker.wipe()
    broker.start(timeout=180)
    return broker


@contextlib.contextmanager
def chaos_lock():
    """Exclusive use of the chaos broker and worker ports on this machine (see conftest)."""
    CHAOS_HOME.mkdir(parents=True, exist_ok=True)
    with open(CHAOS_HOME / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_async(coro):
    return asyncio.run(coro)
