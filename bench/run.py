"""`make bench`: the pipeline side by side with the peers on one local broker (see BENCHMARKS.md).

    python -m bench.run                 # full run: 20,000 SKUs x 50 locations, 3 runs per system
    python -m bench.run --quick         # smoke test of the harness in a few minutes
    python -m bench.run --only throughput --systems positions --runs 1 --profile

Writes bench/results/latest.json, bench/results/*.png and the figures in BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

from app.settings import REPO_ROOT


def _ensure_bench_extra() -> None:
    """`make bench` installs the test extra only: add the bench extra (Quix Streams, psutil, ...) once."""
    import importlib.util
    import subprocess
    missing = [m for m in ("quixstreams", "confluent_kafka", "psutil", "matplotlib")
               if importlib.util.find_spec(m) is None]
    if missing:
        print(f"installing the bench extra (missing: {', '.join(missing)})", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{REPO_ROOT}[bench]"], check=True)


_ensure_bench_extra()

from bench import kafka, procs, report, scenarios, workload  # noqa: E402  (needs the bench extra)

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("ceiling", "quix", "quix-stage", "positions", "pipeline", "hops")   # hops replays the pipeline run before it


def _pin_tree(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a process (the JVM's are already running) to `cpus`."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:
            pass


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem / 2**20, 1), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one run: smoke-test the harness")
    p.add_argument("--skus", type=int, default=20_000)
    p.add_argument("--locations", type=int, default=50)
    p.add_argument("--events", type=int, default=60_000, help="raw events pre-loaded for the throughput runs")
    p.add_argument("--positions-events", type=int, default=12_000,
                   help="raw events (a prefix of the data) whose movements feed the position stage runs "
                        "(ours and quix-stage)")
    p.add_argument("--pipeline-events", type=int, default=6_000,
                   help="raw events (a prefix of the data) for the all-stages runs")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--latency-shares", default="0.5,0.8",
                   help="the latency points, as shares of each system's median drain rate")
    p.add_argument("--recovery-positions", type=int, default=1_000_000)
    p.add_argument("--only", default="throughput,latency,recovery")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--volume-from", type=Path, help="for `hops` without `pipeline`: a results file whose pipeline "
                                                   "runs give the records per raw event to replay")
    p.add_argument("--two-workers", default="pipeline", help="systems also run with two workers")
    p.add_argument("--no-pin", action="store_true", help="do not pin one-worker systems to CPU 1 (harness and "
                                                         "broker to CPU 0)")
    p.add_argument("--profile", action="store_true", help="py-spy flame graph of each system's first run (throughput) and of each latency point")
    p.add_argument("--profile-format", choices=("svg", "txt"), default="svg",
                   help="svg: flame graph; txt: py-spy's collapsed stacks (see bench/profile.py)")
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--report-only", action="store_true", help="only re-render figures from --output's results")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite the figures in BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.quick:  # small defaults; options given explicitly still win
        quick = {"skus": 2_000, "locations": 10, "events": 4_000, "positions_events": 2_000, "pipeline_events": 1_000,
                 "runs": 1, "latency_seconds": 8.0, "recovery_positions": 20_000}
        for name, value in quick.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
        if args.output == RESULTS / "latest.json":
            args.output = RESULTS / "quick.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report_only:  # re-render the plot and BENCHMARKS.md from a results file
        results = json.loads(args.output.read_text())
        report.write(results, RESULTS, update_docs=not args.no_docs)
        print(report.summary(results))
        return 0
    only = set(args.only.split(","))
    chosen = [s for s in SYSTEMS if s in args.systems.split(",")]
    two = [s for s in args.two_workers.split(",") if s in chosen]
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    worker_cpus = {1} if pin else None
    if pin:
        os.sched_setaffinity(0, {0})
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(["python -m bench.run",
                     *(argv if argv is not None else sys.argv[1:])]), "machine": machine(), "pinned": pin,
                     "sizes": {"skus": args.skus, "locations": args.locations, "events": args.events,
                               "positions_events": args.positions_events, "pipeline_events": args.pipeline_events,
                               "runs": args.runs, "latency_seconds": args.latency_seconds,
                               "recovery_positions": args.recovery_positions},
                     "throughput": [], "latency": [], "recovery": None}

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {msg}", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the broker and workers on the way out
    broker = kafka.BenchBroker()
    broker.wipe()
    bootstrap = broker.start()
    if pin:
        _pin_tree(broker.pid(), {0})
    # The broker's CPU beside the worker's: it shares CPU 0 with the harness, and a fresh JVM
    # spends its first minutes compiling (BENCHMARKS.md, thirteenth session).
    scenarios.broker_cpu = procs.Sampler(broker.pid())
    scenarios.broker_cpu.start()
    log(f"broker on {bootstrap}; generating {args.events} raw events over {args.skus} SKUs x {args.locations} "
        f"locations")
    try:
        catalogue = workload.catalogue_for(args.skus, args.locations)
        dataset = workload.build(args.skus, args.locations, args.events)
        data = scenarios.Prepared(dataset, workload.master_records(catalogue), catalogue,
                                  {"positions": args.positions_events, "quix-stage": args.positions_events,
                                   "pipeline": args.pipeline_events})
        results["sizes"]["movements"] = len(dataset.movements)
        log(f"{len(dataset.raw)} raw events -> {len(dataset.movements)} canonical movements")
        peer_loaded: set[str] = set()
        if "throughput" not in only and args.output.exists():
            # Latency and recovery alone: reuse the throughput figures (and so the rates) of the last run.
            previous = json.loads(args.output.read_text())
            results["throughput"] = previous.get("throughput", [])
            results["throughput_from"] = previous.get("throughput_from") or previous.get("started")
            if "latency" not in only:
                results["latency"] = previous.get("latency", [])
                results["latency_from"] = previous.get("latency_from") or previous.get("started")
        volume = _last_volume(json.loads(args.volume_from.read_text())) if args.volume_from else None
        if "throughput" in only:
            for run in range(args.runs):
                for system in chosen:
                    for workers in ((1, 2) if system in two else (1,)):
                        tag = f"tp-{system}-w{workers}-r{run}"
                        flame = str(RESULTS / f"flame-{system}.{args.profile_format}") \
                            if args.profile and run == 0 and workers == 1 else None
                        r = scenarios.throughput(system, bootstrap, data, tag, workers,
                                                 worker_cpus if workers == 1 else None, peer_loaded, profile=flame,
                                                 volume=volume)
                        r["run"] = run
                        results["throughput"].append(r)
                        if system == "pipeline" and workers == 1:
                            volume = r["volume"]
                        log(f"{tag}: {r['outputs_per_s']:.0f} out/s ({r['inputs_per_s']:.0f} in/s), "
                            f"cpu {r['cpu_util']:.2f} (broker {r['broker_cpu_util']:.2f}), rss {r['peak_rss_mb']:.0f} MB"
                            + (f"; {r['inputs_per_s_to_last_availability']:.0f} in/s to the last availability record, "
                               f"last record by topic (s) {r['last_by_topic_s']}"
                               if "last_by_topic_s" in r else "")
                            + (f"; {r['volume']['written_per_raw_event']:.1f} records written and "
                               f"{r['volume']['read_back_per_raw_event']:.1f} read back per raw event"
                               if r.get("volume") else ""))
                        _save(args.output, results)
        if "latency" in only:
            medians = report.throughput_medians(results["throughput"])
            for system in (s for s in chosen if s != "hops"):   # the floor is a throughput figure only
                for workers in ((1, 2) if system in two else (1,)):
                    top = medians.get(f"{system}/w{workers}", {}).get("inputs_per_s")
                    if not top:
                        continue
                    for share in (float(x) for x in args.latency_shares.split(",")):
                        rate = round(top * share)
                        flame = str(RESULTS / f"flame-{system}-at-{int(share * 100)}.{args.profile_format}") \
                            if args.profile and workers == 1 else None
                        # A point during which the broker itself stalled measured the broker: it is
                        # kept, and run once more (BENCHMARKS.md, fourteenth session).
                        for attempt in ("", "-again"):
                            tag = f"lat-{system}-w{workers}-{int(share * 100)}{attempt}"
                            try:
                                r = scenarios.latency(system, bootstrap, data, tag, workers,
                                                      worker_cpus if workers == 1 else None, rate,
                                                      args.latency_seconds, profile=flame)
                            except (RuntimeError, TimeoutError) as exc:  # one failed point does not end the run
                                log(f"{tag}: failed: {exc}")
                                results.setdefault("failed", []).append({"point": tag, "error": str(exc)})
                                break
                            r["share"] = share
                            results["latency"].append(r)
                            log(f"{tag} @ {rate}/s: p50 {r['p50_ms']:.0f} p95 {r['p95_ms']:.0f} p99 {r['p99_ms']:.0f} "
                                f"ms, cpu {r['cpu_util']:.2f}, broker cpu {r['broker_cpu_util']:.2f}; broker probe p50 "
                                f"{r['broker_probe_p50_ms'] or 0:.0f} max {r['broker_probe_max_ms'] or 0:.0f} ms; cores "
                                + ", ".join(f"{c['busy']:.2f} busy {c['steal']:.2f} stolen" for c in r["cores"] or [])
                                + ("; THE BROKER STALLED: this point measured the broker, not the pipeline"
                                   if r["broker_stalled"] else ""))
                            _save(args.output, results)
                            if not r["broker_stalled"]:
                                break
        if "recovery" in only:
            r = scenarios.recovery(bootstrap, data, "recovery", args.recovery_positions, worker_cpus)
            results["recovery"] = r
            log(f"recovery of {r['positions']} positions: ready {r['ready_s']:.1f}s, lookup {r['lookup_s']}, "
                f"probe {r['probe_s']}")
    finally:
        results["machine"]["loadavg_end"] = os.getloadavg()
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        _save(args.output, results)
        broker.stop()
    report.write(results, RESULTS, update_docs=not args.no_docs and not args.quick)
    print(report.summary(results))
    return 0


def _last_volume(results: dict) -> dict:
    runs = [r for r in results.get("throughput", []) if r.get("system") == "pipeline" and r.get("volume")]
    if not runs:
        raise SystemExit("--volume-from: no pipeline run with its volume in that file")
    return runs[-1]["volume"]


def _save(path: Path, results: dict) -> None:
    path.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
