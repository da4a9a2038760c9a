"""Reliability under crashes, rebalances, broker restarts and bad input (see RELIABILITY.md).

Nothing lost, nothing applied twice: the final positions, every availability version and every
posting are compared key by key with an independent oracle (tests/chaos/oracle.py) fed with the
raw records exactly as they sit in Kafka. Duplicate *outputs* after crashes are allowed
(at-least-once) but counted: downstream consumers dedupe them by key+version and posting_id.

Each run writes its figures to .run/chaos/results/<run>-<time>.json (and a line to history.jsonl).
"""
from __future__ import annotations

import pytest

from tests.chaos.runner import ChaosRun
from tests.chaos.soak import SoakPlan, run_soak


def _run(run: ChaosRun, body) -> ChaosRun:
    try:
        body(run)
        verdict = run.finish()
    except BaseException as exc:
        run.record_failure(exc)
        run.abort()
        raise
    print(f"\n[chaos] {run.name}: {run.figures['duration_s']}s, figures in {run.figures_path}")
    assert verdict.mismatch_total == 0, f"{verdict.summary()}\nfigures: {run.figures_path}"
    return run


@pytest.mark.chaos
def test_short_chaos_nothing_lost_or_applied_twice(chaos_broker):
    """Three workers; one SIGKILL, one rebalance (add an empty-dir worker, remove one), one broker restart."""
    def body(run: ChaosRun) -> None:
        run.setup(["w1", "w2", "w3"])
        run.phase(1, 650, [(0.4, "SIGKILL w1, restart it", lambda r: r.kill_and_restart("w1"))])
        run.phase(2, 650, [(0.3, "add w4 with an empty data dir", lambda r: r.add_worker("w4")),
                           (0.7, "SIGTERM w2 (leaves the group)", lambda r: r.remove_worker("w2"))])
        run.phase(3, 650, [(0.4, "restart the broker", lambda r: r.restart_broker())], final=True)

    _run(ChaosRun("short", chaos_broker, seed=11, n_skus=40, rate=80.0), body)


@pytest.mark.chaos
def test_graceful_stop_unclean_start_and_broker_outage(chaos_broker):
    """One worker: SIGTERM drains and commits (no duplicate output), SIGKILL restarts without manual
    steps, a 15 s broker outage pauses processing and loses nothing; RSS stays bounded."""
    def body(run: ChaosRun) -> None:
        run.setup(["g1"])
        run.phase(1, 400, [(0.4, "SIGTERM g1, start it again", lambda r: r.stop_and_restart("g1"))])
        run.phase(2, 400, [(0.3, "broker down for 15 s", lambda r: r.broker_outage(15.0))])
        run.phase(3, 300, [(0.4, "SIGKILL g1, start it again", lambda r: r.kill_and_restart("g1"))], final=True)

    run = _run(ChaosRun("graceful", chaos_broker, seed=23, n_skus=30, rate=60.0), body)
    figures = run.figures
    assert figures["availability_duplicates_by_phase"].get(1, 0) == 0, \
        f"a graceful stop re-emitted availability records: {figures['availability_duplicates_by_phase']}"
    outage = next(f for f in figures["faults"] if f["kind"] == "broker_outage")
    assert outage["workers_alive_through_outage"] == ["g1"], f"the worker died with the broker: {outage}"
    assert outage["resumed_after_s"] is not None, f"no output after the broker came back: {outage}"
    rss = figures["worker_rss_kb"]["g1"]
    assert rss["peak_kb"] < 1_500_000, f"worker RSS peaked at {rss['peak_kb']} KiB"


@pytest.mark.chaos_long
def test_long_chaos_repeated_faults(chaos_broker):
    """More events, more keys and every fault again and again, including two at once."""
    def body(run: ChaosRun) -> None:
        run.setup(["w1", "w2", "w3"])
        run.phase(1, 1500, [(0.3, "SIGKILL w1, restart it", lambda r: r.kill_and_restart("w1")),
                            (0.8, "SIGKILL w2, restart it", lambda r: r.kill_and_restart("w2"))])
        run.phase(2, 1500, [(0.4, "SIGKILL w2 and w3 together, restart both",
                             lambda r: r.kill_many_and_restart(["w2", "w3"]))])
        run.phase(3, 1500, [(0.2, "add w4 with an empty data dir", lambda r: r.add_worker("w4")),
                            (0.6, "SIGTERM w1", lambda r: r.remove_worker("w1")),
                            (0.9, "SIGKILL w4, restart it", lambda r: r.kill_and_restart("w4"))])
        run.phase(4, 1500, [(0.4, "SIGKILL the broker, 5 s down",
                             lambda r: r.restart_broker(hard=True, down_for=5.0))])
        run.phase(5, 1500, [(0.3, "SIGKILL w2, wipe its data dir, restart it",
                             lambda r: r.kill_and_restart("w2", fresh=True)),
                            (0.7, "restart the broker", lambda r: r.restart_broker())])
        run.phase(6, 1500, [(0.3, "start w1 again with an empty data dir", lambda r: r.add_worker("w1")),
                            (0.6, "SIGKILL w3, restart it", lambda r: r.kill_and_restart("w3"))], final=True)

    _run(ChaosRun("long", chaos_broker, seed=37, n_skus=80, rate=120.0, barrier_timeout=420.0), body)


@pytest.mark.chaos_soak
def test_soak_converges_after_both_workers_restart_under_sustained_load(chaos_broker):
    """Two workers, ≥ 400 raw records/s for about 60 s; half-way one is SIGKILLed (restarted on its
    data dir) and the other SIGTERMed (restarted on an empty data dir). Every position, posting and
    dead letter must equal the oracle within 60 s of the last send, and the verdict must be clean.
    Rate, duration and limits: SOAK_RATE, SOAK_DURATION, SOAK_CONVERGE_WITHIN, SOAK_OBSERVE (`make soak`)."""
    plan = SoakPlan.from_env()
    run = ChaosRun("soak", chaos_broker, seed=53, n_skus=40, rate=plan.rate, barrier_timeout=300.0,
                   static_membership=plan.static_membership)
    try:
        result = run_soak(run, plan)
    except BaseException as exc:
        run.record_failure(exc)
        run.abort()
        raise
    assert result.passed_time_limit, f"not converged within {plan.converge_within:.0f}s of the last send\n{result.report}"
    assert result.verdict.mismatch_total == 0, f"{result.verdict.summary()}\n{result.report}"
