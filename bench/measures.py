"""The arithmetic of a latency point, apart from the brokers and processes that feed it: which
second an input or a probe belongs to, when a point measured a stalled broker rather than the system,
percentiles, and the per-second rows of the report. Plain Python, so tests/unit/test_bench_measures.py
runs it without Kafka or confluent-kafka."""
from __future__ import annotations

from collections.abc import Callable


def acks_by_second(acks: list[tuple[float, float]], start: float, end: float) -> list[list[float]]:
    """(sent at, seconds to the acknowledgement) pairs → for each second from `start` to `end`, the
    acknowledgements (ms) of what was sent in it: the probe's round trips, or the load's inputs'."""
    seconds: list[list[float]] = [[] for _ in range(int(end - start) + 1)]
    for sent, ack in acks:
        second = int(sent - start) if sent >= start else -1
        if 0 <= second < len(seconds):   # the last second is a whole one, past `end`
            seconds[second].append(ack * 1000)
    return seconds


# The broker itself stalled during a latency point (every second point of a run did, fourteenth
# session), so the point measured the broker: one produce round trip from the harness took over
# BROKER_STALL_MS, or over BROKER_SLOW_MS in BROKER_SLOW_SECONDS seconds of the load or more. A single
# round trip of 100–200 ms happens in points whose latency it does not move.
BROKER_STALL_MS = 200
BROKER_SLOW_MS = 100
BROKER_SLOW_SECONDS = 2
# The probe's topic is not the load's: in the twenty-fifth session's stalled points the probe answered
# within 71 ms while the load's own inputs of the first second were acknowledged after 0.5-1.0 s
# (and the worker sat at 0.1-0.4 of its core). So the inputs' acknowledgements count too: a second
# of the load whose slowest input took over INPUT_STALL_MS to be acknowledged (the harness batches
# its inputs: 100-350 ms at tens of thousands a second, 10-60 ms at our rates).
INPUT_STALL_MS = 400


def broker_stalled(probes_by_second: list[list[float]], inputs_by_second: list[list[float]] = ()) -> bool:
    """From the probe round trips (ms) of each second of the load, and the acknowledgements (ms) of
    the inputs sent in each second."""
    slowest = [max(probes) for probes in probes_by_second if probes]
    return any(ms > BROKER_STALL_MS for ms in slowest) or \
        sum(ms > BROKER_SLOW_MS for ms in slowest) >= BROKER_SLOW_SECONDS or \
        any(max(inputs) > INPUT_STALL_MS for inputs in inputs_by_second if inputs)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def per_second(outputs: list[tuple[str, float]], sent: dict[str, float], started: float, ended: float,
               probes_by_second: list[list[float]], worker_cpu: Callable[[float], float | None] | None = None,
               inputs_by_second: list[list[float]] = ()) -> list[list]:
    """Each second of the load (by when the input was sent): [second, samples, p50 ms, max ms,
    slowest probe ms, the workers' CPU in that second of the clock, the slowest acknowledgement of
    an input sent in that second, ms]. A stall shows as a run of seconds whose latency falls by one
    second per second; a worker below one core in such a run was waiting for something, not short
    of CPU; inputs acknowledged late reached the system late."""
    by_second: dict[int, list[float]] = {}
    for source_id, ts in outputs:
        if source_id in sent and started * 1000 <= sent[source_id] <= ended * 1000:
            by_second.setdefault(int(sent[source_id] / 1000 - started), []).append(ts - sent[source_id])
    rows = []
    for second in sorted(by_second):
        lat = by_second[second]
        probes = probes_by_second[second] if second < len(probes_by_second) else []
        inputs = inputs_by_second[second] if second < len(inputs_by_second) else []
        cpu = None
        if worker_cpu is not None:
            begin, end = worker_cpu(started + second), worker_cpu(started + second + 1)
            cpu = round(end - begin, 2) if begin is not None and end is not None else None
        rows.append([second, len(lat), round(percentile(lat, 50)), round(max(lat)), round(max(probes)) if probes else None,
                     cpu, round(max(inputs)) if inputs else None])
    return rows
