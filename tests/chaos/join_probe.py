"""Manual reproduction of RELIABILITY.md §5 row 4c: master data produced while a third worker joins.

    .venv/bin/python -m tests.chaos.join_probe ROUNDS DELAY

Starts a fresh chaos broker, then per round: two workers, a third one without waiting for it,
the master data DELAY seconds later, and checks that every worker's global tables hold every item
and location within 60 s. Rounds share the broker, so each new group also reads the earlier
rounds' master records: the recoveries fetch while they run, which is what exposed the bug. Not a
pytest test: a fresh broker per round (as the suite has) did not reproduce it.
"""
from __future__ import annotations

import sys
import time

from app.kafka_io import create_topics
from tests.chaos.runner import CHAOS_HOME, BarrierTimeout, ChaosRun, declare_changelogs, fresh_broker


def main(rounds: int, delay: float) -> list[tuple[str, str]]:
    broker = fresh_broker(CHAOS_HOME / "kafka", 29192)
    results = []
    try:
        for i in range(rounds):
            run = ChaosRun(f"join{i}", broker, seed=37, n_skus=80)
            try:
                run.loop.run(create_topics(broker.bootstrap, 8), 120)
                run.loop.run(declare_changelogs(broker.bootstrap, run.app_id, 8), 120)
                run.cluster.start("w1")
                run.cluster.start("w2")
                run.cluster.start("w3", wait=0)
                time.sleep(delay)
                run.producer.send(run.workload.master_records())
                run._wait_master(len(run.workload.skus), len(run.workload.locations), timeout=60)
                results.append(("ok", str(run.run_dir)))
            except BarrierTimeout as exc:
                results.append(("FAIL: " + str(exc).split("\n")[0][:120], str(run.run_dir)))
            finally:
                run.cluster.kill_all()
            print(results[-1], flush=True)
    finally:
        broker.stop()
    return results


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
