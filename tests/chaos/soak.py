"""Sustained-load convergence (issue 14): how long after the last send until the outputs equal the oracle.

Two workers take a steady raw load (the chaos workload, so the oracle counts every record). Half-way
through, one is SIGKILLed and restarted on its data dir while the other is SIGTERMed and restarted
on an EMPTY data dir (a replaced host: everything comes back from the changelogs). After the last
send the run measures the time until every checked quantity equals the oracle:

- every SKU@LOCATION's latest availability record (highest version) has the oracle's version and
  buckets, as verify.py compares them;
- every posting the oracle expects (movement and kind) is on `finance.postings`; the movement of
  a posting is known from its availability record's cause. Extra postings (the oracle's optional
  kinds) do not count towards it: counted as distinct ids they made the check pass while expected
  postings were still missing (`unmatched_at_end.postings` was −1,500 to −1,600 in the twelfth
  session's soaks);
- distinct raw records dead-lettered reach the bad records the oracle holds.

The run then reaches the usual key-by-key verdict (runner.ChaosRun.finish): nothing lost, nothing
applied twice, duplicates counted. A progress line every few seconds says how many quantities match
and what each worker's /readyz reports, so a stall shows what it waits for.

Spec silence, decided here: the load is a warm-up phase (with a barrier, so that orders exist for
the cross-topic OMS and click-and-collect events) and then ONE phase sent without a barrier: the
workload keeps cross-topic ordering only across phase barriers, and a barrier in the middle of the
load would stop it being sustained. "Progress" for the longest stall is any new output record of
the run (availability, posting or dead letter) seen by the tracker.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from tests.chaos.kafka_tools import Tracker, group_lag, lagging
from tests.chaos.oracle import MovementRef, OracleResult, RawInput
from tests.chaos.runner import INPUT_TOPICS, ChaosRun
from tests.chaos.verify import RAW_TOPICS, Verdict


@dataclass(frozen=True)
class SoakPlan:
    rate: float = 400.0            # raw records per second offered to the raw topics
    duration: float = 60.0         # seconds of sustained load (rate * duration business events)
    converge_within: float = 60.0  # the pass mark, seconds after the last send
    observe_for: float = 300.0     # keep measuring this long after the last send, pass or fail
    warmup_events: int = 300
    progress_every: float = 5.0
    # Each worker keeps one group identity across restarts (KAFKA_GROUP_INSTANCE_ID), as in the
    # StatefulSet deployment OPERATIONS.md recommends; SOAK_STATIC_MEMBERSHIP=0 measures without.
    static_membership: bool = True

    @classmethod
    def from_env(cls) -> SoakPlan:
        """SOAK_RATE, SOAK_DURATION, SOAK_CONVERGE_WITHIN, SOAK_OBSERVE, SOAK_STATIC_MEMBERSHIP (`make soak`)."""
        def number(name: str, default: float) -> float:
            return float(os.environ.get(name, default))
        base = cls()
        return cls(rate=number("SOAK_RATE", base.rate), duration=number("SOAK_DURATION", base.duration),
                   converge_within=number("SOAK_CONVERGE_WITHIN", base.converge_within),
                   observe_for=number("SOAK_OBSERVE", base.observe_for),
                   static_membership=os.environ.get("SOAK_STATIC_MEMBERSHIP", "1") != "0")

    @property
    def events(self) -> int:
        return int(self.rate * self.duration)


@dataclass(frozen=True)
class Expected:
    """What the oracle says the outputs must hold once the pipeline has caught up."""

    positions: dict[str, tuple[int, tuple[int, ...]]]  # key -> (version, buckets)
    posting_kinds: frozenset[tuple[MovementRef, str]]  # (movement, kind) of every posting the oracle expects
    dead_letters: int

    @classmethod
    def of(cls, result: OracleResult) -> Expected:
        return cls({key: (p.version, tuple(p.buckets().values())) for key, p in result.positions.items()},
                   result.expected_postings(),
                   len(result.bad_records))

    @property
    def postings(self) -> int:
        return len(self.posting_kinds)

    @property
    def total(self) -> int:
        return len(self.positions) + self.postings + self.dead_letters


@dataclass(frozen=True)
class Check:
    positions: int
    postings: int
    dead_letters: int
    expected: Expected

    @classmethod
    def of(cls, tracker: Tracker, expected: Expected) -> Check:
        with tracker.lock:
            seen = tracker.seen
            positions = sum(1 for key, (version, buckets) in expected.positions.items()
                            if seen.max_version.get(key, 0) == version and seen.latest.get(key) == buckets)
            postings = seen.expected_postings_seen(expected.posting_kinds)
            dead = sum(1 for where in seen.dead_lettered if where[0] in RAW_TOPICS)
        return cls(positions, postings, dead, expected)

    @property
    def matched(self) -> int:
        # Dead letters beyond the expected count are not "more matched": the verdict reports them
        # as unexpected.
        return self.positions + self.postings + min(self.dead_letters, self.expected.dead_letters)

    @property
    def converged(self) -> bool:
        return self.matched == self.expected.total

    def line(self) -> str:
        e = self.expected
        return (f"{self.matched}/{e.total} match (positions {self.positions}/{len(e.positions)}, "
                f"postings {self.postings}/{e.postings}, dead letters {self.dead_letters}/{e.dead_letters})")


@dataclass
class Monitor:
    """Samples the tracker twice a second: the longest span without new output, and a progress line
    every `every` seconds with the matching quantities and each worker's /readyz detail."""

    run: ChaosRun
    expected: Expected
    every: float
    started: float = field(default_factory=time.monotonic)
    last_send: float | None = None
    lines: list[str] = field(default_factory=list)
    max_gap: float = 0.0
    max_gap_ended_at: float = 0.0  # seconds since the load started
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="soak-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._gap(time.monotonic())

    def _gap(self, now: float) -> None:
        with self.run.tracker.lock:
            last = max(self.run.tracker.seen.last_output_at, self.started)
        if now - last > self.max_gap:
            self.max_gap, self.max_gap_ended_at = now - last, now - self.started

    def _loop(self) -> None:
        next_line = self.started + self.every
        while not self._stop.wait(0.5):
            now = time.monotonic()
            self._gap(now)
            if now >= next_line:
                next_line += self.every
                self.say(now)

    def say(self, now: float) -> None:
        check = Check.of(self.run.tracker, self.expected)
        when = (f"t+{now - self.last_send:5.1f}s after last send" if self.last_send is not None
                else f"load t={now - self.started:5.1f}s")
        line = f"[soak] {when}: {check.line()}; input lag {self.lag()}; readyz {self.readyz()}"
        self.lines.append(line)
        print(line, flush=True)

    def lag(self) -> str:
        """The group's lag on the topics the agents consume: which partitions are behind, and by how much."""
        try:
            behind = lagging(self.run.loop.run(
                group_lag(self.run.broker.bootstrap, self.run.app_id, INPUT_TOPICS), 10))
        except Exception as exc:  # diagnostics only; the broker may be slow to answer
            return f"? ({type(exc).__name__})"
        parts = sum(len(p) for p in behind.values())
        records = sum(sum(p.values()) for p in behind.values())
        return f"{records} records on {parts} partitions"

    def readyz(self) -> str:
        parts = []
        for name in sorted(self.run.cluster.workers):
            worker = self.run.cluster.workers[name]
            if worker.proc is None or worker.proc.poll() is not None:
                parts.append(f"{name}=down")
                continue
            status, body = self.run._get(name, "/readyz")
            if status == 200:
                parts.append(f"{name}=ready")
            elif isinstance(body, dict) and isinstance(body.get("checks"), dict):
                failing = [check for check, ok in body["checks"].items() if not ok]
                parts.append(f"{name}={status} not {','.join(failing)}")
            else:
                parts.append(f"{name}=no answer")
        return " ".join(parts)


@dataclass
class SoakResult:
    plan: SoakPlan
    figures: dict
    verdict: Verdict | None = None
    report: str = ""

    @property
    def convergence_s(self) -> float | None:
        return self.figures["convergence_s"]

    @property
    def passed_time_limit(self) -> bool:
        return self.convergence_s is not None and self.convergence_s <= self.plan.converge_within


def restart_both(run: ChaosRun, killed: str, replaced: str) -> None:
    """SIGKILL `killed` and start it again on its data dir; meanwhile SIGTERM `replaced` and start it
    on an empty data dir. Both restarts overlap: the group rebalances while both recover."""
    failure: list[BaseException] = []

    def crash() -> None:
        try:
            run.kill_and_restart(killed)
        except BaseException as exc:  # re-raised in the driver thread below
            failure.append(exc)

    crashing = threading.Thread(target=crash, name=f"soak-restart-{killed}")
    crashing.start()
    run.cluster.stop(replaced)
    run.cluster.start(replaced, fresh=True, kind="restart_after_sigterm_empty_dir")
    crashing.join()
    if failure:
        raise failure[0]


_LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b\]?\s*(.*)")


def log_findings(run: ChaosRun, top: int = 8) -> dict[str, dict]:
    """WARNING/ERROR lines of each worker's log (all its lives), counted, the most frequent first."""
    findings: dict[str, dict] = {}
    for name, worker in sorted(run.cluster.workers.items()):
        try:
            text = worker.log_path.read_text(errors="replace")
        except OSError:
            continue
        counts: Counter = Counter()
        levels: Counter = Counter()
        for line in text.splitlines():
            match = _LEVEL.search(line)
            if match:
                levels[match.group(1)] += 1
                counts[f"{match.group(1)} {re.sub(r'[0-9]+', '#', match.group(2))[:160]}"] += 1
        findings[name] = {"log": str(worker.log_path), "levels": dict(levels), "top": counts.most_common(top)}
    return findings


def run_soak(run: ChaosRun, plan: SoakPlan, workers: tuple[str, str] = ("s1", "s2")) -> SoakResult:
    """Set up, load, restart both workers half-way, measure convergence, then the chaos verdict."""
    killed, replaced = workers
    run.setup(list(workers))
    run.phase(1, plan.warmup_events)  # with its barrier: orders for the cross-topic events of phase 2

    records = run.workload.phase_records(2, plan.events, final=True)
    run.generated.extend(records)
    for record in records:
        run.phase_oracle.feed(RawInput(record.topic, -1, -1, record.key, record.value, 2, record.bad))
    expected = Expected.of(run.phase_oracle.result)
    print(f"\n[soak] {len(records)} records at {plan.rate:.0f}/s; {expected.total} quantities to check "
          f"({len(expected.positions)} positions, {expected.postings} postings, {expected.dead_letters} dead letters)",
          flush=True)

    monitor = Monitor(run, expected, plan.progress_every)
    future, progress = run.producer.start_sending(records, plan.rate)
    monitor.start()
    faults: threading.Thread | None = None
    failure: list[BaseException] = []
    timing: dict[str, float] = {}

    def restart() -> None:
        # In its own thread: the restarts take longer than the rest of the load, and the last send
        # must be timed when it happens, not when both workers are back.
        try:
            restart_both(run, killed, replaced)
            timing["ready_again"] = time.monotonic() - monitor.started
        except BaseException as exc:  # re-raised in the driver thread
            failure.append(exc)

    try:
        while progress.sent < progress.total / 2 and not future.done():
            time.sleep(0.05)
        timing["faults"] = time.monotonic() - monitor.started
        run.notes.append(f"phase 2: SIGKILL {killed} (restart on its data dir) and SIGTERM {replaced} (restart "
                         f"on an empty data dir) at {progress.sent}/{progress.total} records "
                         f"(t={timing['faults']:.0f}s of the load)")
        faults = threading.Thread(target=restart, name="soak-restarts")
        faults.start()
        future.result()
        last_send = monitor.last_send = progress.finished_at
        send_seconds = progress.finished_at - progress.started_at

        converged: float | None = None
        while time.monotonic() < last_send + plan.observe_for:
            if Check.of(run.tracker, expected).converged:
                converged = time.monotonic() - last_send
                break
            if failure:
                raise failure[0]
            if not faults.is_alive():
                run.watchdog()  # what a liveness probe does in production; its restarts are recorded
            time.sleep(0.25)
        faults.join()
        if failure:
            raise failure[0]
    finally:
        monitor.stop()
        if faults is not None:
            faults.join()
    final = Check.of(run.tracker, expected)
    monitor.say(time.monotonic())
    logs = log_findings(run)
    run.extra_figures["soak"] = figures = {
        "plan": asdict(plan) | {"events": plan.events},
        "records_sent": len(records), "send_seconds": round(send_seconds, 1),
        "achieved_rate": round(len(records) / send_seconds, 1), "producer_retries": progress.retried,
        "faults_at_s": round(timing["faults"], 1), "both_ready_again_at_s": round(timing["ready_again"], 1),
        "last_send_at_s": round(last_send - monitor.started, 1),
        "convergence_s": None if converged is None else round(converged, 1),
        "converged_within_limit": converged is not None and converged <= plan.converge_within,
        "checked_quantities": expected.total, "matched_at_end_of_observation": final.matched,
        "unmatched_at_end": {"positions": len(expected.positions) - final.positions,
                             "postings": expected.postings - final.postings,
                             "dead_letters": expected.dead_letters - final.dead_letters},
        "max_no_output_s": round(monitor.max_gap, 1), "max_no_output_ended_at_s": round(monitor.max_gap_ended_at, 1),
        "progress_lines": monitor.lines, "worker_logs": logs,
    }
    verdict = run.finish(posting_timeout=30.0, consume_timeout=60.0)
    result = SoakResult(plan, figures, verdict)
    result.report = report(run, result)
    print(result.report, flush=True)
    return result


def report(run: ChaosRun, result: SoakResult) -> str:
    f, soak, plan = run.figures, result.figures, result.plan
    applied = f["availability_records_out"] - f["availability_duplicate_records"]
    converged = (f"{soak['convergence_s']}s after the last send" if soak["convergence_s"] is not None
                 else f"NOT within {plan.observe_for:.0f}s of observation ({soak['matched_at_end_of_observation']}/"
                      f"{soak['checked_quantities']} matched; unmatched {soak['unmatched_at_end']})")
    lines = [
        f"[soak] report ({run.figures_path})",
        f"  load: {soak['records_sent']} records in {soak['send_seconds']}s = {soak['achieved_rate']}/s "
        f"(offered {plan.rate:.0f}/s); both workers restarted at t={soak['faults_at_s']}s, ready again at "
        f"t={soak['both_ready_again_at_s']}s; last send at t={soak['last_send_at_s']}s; static group membership: "
        f"{'yes' if plan.static_membership else 'no'}",
        f"  records in (raw, all phases): {f['raw_records_produced']}, of them bad {f['bad_records_produced']}, "
        f"producer re-sends {f['producer_resends_in']}",
        f"  applied: {applied} movements (oracle expects {f['movements_expected']}); postings "
        f"{f['postings_distinct_ids']} distinct (expected {f['postings_expected']})",
        f"  dead letters: {f['dlq_records_out']} records",
        f"  duplicates out: availability {f['availability_duplicate_records']}, postings "
        f"{f['postings_duplicate_records']}",
        f"  convergence: {converged}; limit {plan.converge_within:.0f}s -> "
        f"{'PASS' if result.passed_time_limit else 'FAIL'}",
        f"  max time with no new output: {soak['max_no_output_s']}s (ended at t={soak['max_no_output_ended_at_s']}s "
        f"of the load)",
        f"  verdict: {f['mismatch_total']} mismatches {f['mismatches']}",
        f"  faults: {[(x['kind'], x['target'], x['at_s'], x['seconds']) for x in f['faults']]}",
        f"  notes: {f['fault_notes']}",
    ]
    for name, found in soak["worker_logs"].items():
        lines.append(f"  {name} log {found['levels']}: {found['log']}")
        lines.extend(f"    {count} x {message}" for message, count in found["top"])
    return "\n".join(lines)
