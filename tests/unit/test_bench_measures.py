"""The benchmark harness's arithmetic (bench/measures.py, bench/report.py, bench/procs.py's Sampler):
the figures in BENCHMARKS.md are only as right as these."""
from __future__ import annotations

import pytest

from bench.hotpath import pydantic_share
from bench.measures import (
    BROKER_SLOW_MS, BROKER_STALL_MS, INPUT_STALL_MS, acks_by_second, broker_stalled, per_second, percentile,
)
from bench.procs import Sampler
from bench.report import complete_runs, ratios, throughput_medians


def test_acknowledgements_are_grouped_by_the_second_their_record_was_sent_in():
    acks = [(99.9, 0.010), (100.0, 0.020), (100.99, 0.030), (101.5, 0.450), (103.2, 0.005), (104.1, 0.001)]
    # From 100 to 103.5: four seconds, the last a whole one past the end; before and after are left out.
    assert acks_by_second(acks, 100.0, 103.5) == [[20.0, 30.0], [450.0], [], [5.0]]


def test_a_point_measured_a_stalled_broker_on_one_slow_round_trip_two_slowish_seconds_or_a_late_input():
    quick = [[10.0, 12.0], [], [40.0]]
    assert not broker_stalled(quick, [[50.0], [], [INPUT_STALL_MS]])
    assert broker_stalled([[10.0], [BROKER_STALL_MS + 1]])
    assert not broker_stalled([[BROKER_SLOW_MS + 1], [10.0]])                      # one slowish second is noise
    assert broker_stalled([[BROKER_SLOW_MS + 1], [10.0], [BROKER_SLOW_MS + 1]])    # two are not
    assert broker_stalled(quick, [[50.0], [INPUT_STALL_MS + 1]])                   # the probe fine, the load's inputs late


def test_percentiles_take_the_nearest_rank():
    values = list(range(1, 101))   # 1..100
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (51, 99, 100)
    assert percentile([7.0], 99) == 7.0


def test_each_second_of_the_load_shows_its_latency_the_probe_the_workers_cpu_and_the_inputs_acknowledgement():
    started, ended = 1000.0, 1002.0
    sent = {"E1": 1000_100.0, "E2": 1000_900.0, "E3": 1001_500.0, "LATE": 1003_500.0, "EARLY": 999_000.0}
    outputs = [("E1", 1000_150.0), ("E2", 1001_000.0), ("E3", 1001_530.0), ("LATE", 1003_600.0),
               ("EARLY", 999_010.0), ("UNKNOWN", 1000_500.0)]
    used = {1000.0: 10.0, 1001.0: 10.8, 1002.0: None}   # CPU seconds used by then; None: past the samples
    rows = per_second(outputs, sent, started, ended, probes_by_second=[[4.0, 9.0], []],
                      worker_cpu=used.get, inputs_by_second=[[2.0], [380.0]])
    # [second, samples, p50 ms, max ms, slowest probe, CPU in that second, slowest input acknowledgement]
    assert rows == [[0, 2, 50, 100, 9, 0.8, 2], [1, 1, 30, 30, None, None, 380]]


def test_cpu_at_a_moment_is_read_between_the_two_samples_around_it():
    sampler = Sampler(pid=0)
    sampler.samples = [(10.0, 1.0, 0, 0.0), (10.5, 1.4, 0, 0.0), (11.0, 1.5, 0, 0.0)]
    assert sampler.cpu_at(10.25) == pytest.approx(1.2)
    assert sampler.cpu_at(10.75) == pytest.approx(1.45)
    assert sampler.cpu_at(9.0) is None and sampler.cpu_at(12.0) is None


def drain(system: str, outputs: int, rate: float, workers: int = 1) -> dict:
    return {"system": system, "workers": workers, "outputs": outputs, "outputs_per_s": rate, "inputs_per_s": rate,
            "cpu_util": 0.9, "peak_rss_mb": 300, "drain_s": outputs / rate, "wall_from_start_s": outputs / rate + 2}


def test_a_run_cut_short_is_left_out_of_the_medians_and_counted():
    rows = [drain("pipeline", 30_000, 1_300.0), drain("pipeline", 30_000, 1_400.0), drain("pipeline", 20_000, 9_000.0),
            drain("pipeline", 29_000, 1_200.0), drain("ceiling", 90_000, 90_000.0)]
    assert len(complete_runs(rows)) == 4   # 20,000 of 30,000 outputs: the collector gave up early
    medians = throughput_medians(rows)
    assert medians["pipeline/w1"]["outputs_per_s"] == 1_300.0
    assert (medians["pipeline/w1"]["runs"], medians["pipeline/w1"]["cut_short"]) == (3, 1)
    assert medians["pipeline/w1"]["spread"] == [1_200, 1_400]
    assert ratios(medians)["pipeline/w1"] == pytest.approx(1_300 / 90_000)
    assert ratios({"pipeline/w1": medians["pipeline/w1"]}) == {}   # no ceiling run: no ratios


def test_the_pydantic_share_tells_models_and_records_encoded_from_the_rest():
    from pydantic import BaseModel

    class Line(BaseModel):
        account: str
        amount: int

    def build_and_encode():
        for n in range(2_000):
            Line(account="4000", amount=n).model_dump_json()

    def plain_python():
        total = 0
        for n in range(2_000):
            total += sum(range(n % 50))

    built = pydantic_share(build_and_encode)
    assert sum(built.values()) == pytest.approx(1.0)
    assert built["models"] > 0 and built["codecs"] > 0
    plain = pydantic_share(plain_python)
    assert plain["models"] == 0 and plain["codecs"] == 0 and plain["other"] == pytest.approx(1.0)
