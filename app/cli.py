"""Command line: worker, topics, master data, simulated workload, DLQ replay, the all-in-one `run`."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.settings import REPO_ROOT, Settings


def _settings() -> Settings:
    return Settings.from_env()


def cmd_worker(args: argparse.Namespace) -> None:
    from app.worker import main
    main(args.faust_args)


def cmd_topics(args: argparse.Namespace) -> None:
    from app.kafka_io import create_topics
    s = _settings()
    asyncio.run(create_topics(s.kafka, s.topic_partitions, replication=s.topic_replication,
                                audit_retention_ms=s.audit_retention_ms))
    print(f"topics declared on {s.kafka_bootstrap} with {s.topic_partitions} partitions")


def cmd_simulate(args: argparse.Namespace) -> None:
    from app.kafka_io import create_topics, produce
    from app.simulation.workload import Catalogue, RetailWorkload
    s = _settings()
    catalogue = Catalogue(n_skus=args.skus, n_stores=args.stores, n_dcs=args.dcs)
    seed = args.seed if args.seed is not None else int(time.time())
    workload = RetailWorkload(catalogue=catalogue, seed=seed, duplicate_rate=args.duplicates)

    async def run() -> None:
        await create_topics(s.kafka, s.topic_partitions, replication=s.topic_replication,
                                audit_retention_ms=s.audit_retention_ms)
        await produce(s.kafka, catalogue.master_events())
        if args.wait_for:
            await _wait_for_master_data(args.wait_for)
        await asyncio.sleep(args.master_delay)
        await produce(s.kafka, workload.opening_stock())
        total = 0
        while args.events == 0 or total < args.events:
            batch = args.batch if args.events == 0 else min(args.batch, args.events - total)
            total += await produce(s.kafka, workload.events(batch), rate=args.rate)
            if args.day_close_every and total % args.day_close_every < batch:
                await produce(s.kafka, workload.day_close())
            print(f"simulated {total} events", flush=True)
        await produce(s.kafka, workload.day_close())

    asyncio.run(run())


async def _wait_for_master_data(worker_url: str, timeout: float = 180.0) -> None:
    """Master data reaches workers asynchronously: hold the workload until the worker has it."""
    import json
    import urllib.request
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            body = await loop.run_in_executor(None, lambda: urllib.request.urlopen(f"{worker_url}/readyz", timeout=2).read())
            if json.loads(body).get("master_data_loaded"):
                return
        except OSError:
            pass
        await asyncio.sleep(1.0)
    raise SystemExit(f"worker at {worker_url} did not load master data within {timeout:.0f}s")


def cmd_replay(args: argparse.Namespace) -> None:
    from app.replay import replay_dead_letters
    s = _settings()
    replayed = asyncio.run(replay_dead_letters(
        s.kafka, error_code=args.code, source_topic=args.source_topic,
        source_event_ids=set(args.event_id or []) or None, limit=args.limit, progress=True))
    print(f"replayed {replayed} dead letters")


def cmd_recon_report(args: argparse.Namespace) -> None:
    """The latest snapshot's reconciliation of one location, from inventory.reconciliation."""
    from app.domain.reconciliation import latest_report, render_csv, render_table
    from app.kafka_io import read_topic
    from app.topics import RECONCILIATION
    s = _settings()
    records = asyncio.run(read_topic(s.kafka, RECONCILIATION, until_idle=1.0, timeout=args.timeout))
    report = latest_report(args.location, (r.value for r in records if r.key == args.location))
    sys.stdout.write(render_csv(report) if args.csv else render_table(report))
    if report.snapshot_id is None:
        sys.exit(1)


def cmd_schemas(args: argparse.Namespace) -> None:
    """docs/schemas/<topic>.json, one JSON Schema per contract topic, from the pydantic models."""
    from app.schemas import SCHEMA_DIR, write_all
    for path in write_all(Path(args.out) if args.out else SCHEMA_DIR):
        print(path)


def cmd_erp_reconcile(args: argparse.Namespace) -> None:
    """Per date, location and account: the ERP's ledger against the batches on finance.journal_batches."""
    from datetime import date

    from app.domain.erp_entries import add_ledger_line, batch_balances, differences
    from app.erp.client import TrytonLedger, TrytonRpc
    from app.kafka_io import read_topic
    from app.models.records import JournalBatch
    from app.topics import JOURNAL_BATCHES
    s = _settings()
    if not s.erp_url:
        raise SystemExit("ERP_URL is not set: name the Tryton server to compare with (see README, ERP)")
    day = date.fromisoformat(args.date) if args.date else None
    records = asyncio.run(read_topic(s.kafka, JOURNAL_BATCHES, until_idle=1.0, timeout=args.timeout))
    batches = [JournalBatch.model_validate(r.value) for r in records]
    batches = [b for b in batches if day is None or b.business_date == day]
    pipeline = batch_balances(batches)

    async def ledger_side():
        erp = TrytonLedger(TrytonRpc(s.erp_url, s.erp_database, s.erp_user, s.erp_password, timeout=s.erp_timeout))
        balances: dict = {}
        try:
            for entity in sorted({b.legal_entity for b in batches}):
                for line in await erp.ledger_lines(entity, day):
                    if line["move."]["state"] != "posted":
                        continue  # a draft is not in the ledger yet
                    add_ledger_line(balances, line["move."]["date"], line["description"] or "",
                                    line["account."]["code"], line["debit"], line["credit"])
        finally:
            await erp.rpc.close()
        return balances

    found = differences(pipeline, asyncio.run(ledger_side()))
    print(f"{len(batches)} batches compared with {s.erp_url} ({s.erp_database})"
          f"{' for ' + day.isoformat() if day else ''}: {len(found)} difference(s)")
    if found:
        print(f"{'date':<11} {'location':<20} {'account':<8} {'pipeline Dr':>14} {'pipeline Cr':>14} "
              f"{'ERP Dr':>14} {'ERP Cr':>14}")
        for d in found:
            print(f"{d.business_date.isoformat():<11} {d.location_id:<20} {d.account:<8} {d.pipeline_debit:>14} "
                  f"{d.pipeline_credit:>14} {d.erp_debit:>14} {d.erp_credit:>14}")
        sys.exit(1)


def cmd_erp(args: argparse.Namespace) -> None:
    from app.erp.__main__ import main as erp_main
    erp_main([args.action])


def cmd_run(args: argparse.Namespace) -> None:
    """The main job: local broker (unless KAFKA_BOOTSTRAP is set), a worker, a simulated workload."""
    env = dict(os.environ)
    run_dir = Path(args.run_dir).absolute()
    env.setdefault("DATA_DIR", str(run_dir / "worker"))
    started_broker = None
    if not env.get("KAFKA_BOOTSTRAP"):
        from app.broker import LocalBroker
        port = int(env.get("KAFKA_PORT") or 9092)
        started_broker = LocalBroker(home=run_dir / "kafka", port=port, controller_port=port + 1)
        env["KAFKA_BOOTSTRAP"] = started_broker.start()
        print(f"local Kafka broker on {env['KAFKA_BOOTSTRAP']} (log: {started_broker.log_file})", flush=True)
    env.setdefault("API_TOKENS", "viewer-token=viewer,admin-token=admin")
    started_erp = None
    if not env.get("ERP_URL") and env.get("ERP_ENABLED", "1").lower() not in ("0", "false", "no", "off"):
        from app.erp.launcher import LocalErp
        started_erp = LocalErp()
        env["ERP_URL"] = started_erp.start(timeout=120)
        env["ERP_DATABASE"] = started_erp.database
        print(f"local Tryton ERP on {env['ERP_URL']} database {started_erp.database} "
              f"(log: {started_erp.log_file})", flush=True)
    py = sys.executable
    subprocess.run([py, "-m", "app.cli", "topics"], env=env, check=True)
    # Children get sessions of their own: Ctrl-C reaches only us, and we stop them in order.
    worker = subprocess.Popen([py, "-m", "app.cli", "worker"], env=env, start_new_session=True)
    port = env.get("WEB_PORT", "6066")
    simulator = subprocess.Popen([py, "-m", "app.cli", "simulate", "--rate", str(args.rate), "--events", "0",
                                  "--day-close-every", "5000", "--wait-for", f"http://127.0.0.1:{port}",
                                  "--master-delay", "2"], env=env, start_new_session=True)
    print(f"\nworker web views: http://127.0.0.1:{port}/  (dashboard)\n"
          f"  curl -H 'Authorization: Bearer viewer-token' http://127.0.0.1:{port}/v1/positions/SKU-00001/S001\n"
          f"  metrics: http://127.0.0.1:{port}/metrics\nCtrl-C stops everything.\n", flush=True)

    def stop(*_: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abandon the cleanup
        for proc in (simulator, worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (simulator, worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if started_broker is not None and not args.keep_broker:
            started_broker.stop()
        if started_erp is not None and not args.keep_broker:
            started_erp.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while worker.poll() is None:
            time.sleep(0.5)
        print(f"worker exited with {worker.returncode}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="stock-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run one pipeline worker against KAFKA_BOOTSTRAP")
    p.add_argument("faust_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("topics", help="declare every contract topic")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("simulate", help="produce master data and a simulated retail workload")
    p.add_argument("--skus", type=int, default=200)
    p.add_argument("--stores", type=int, default=4)
    p.add_argument("--dcs", type=int, default=1)
    p.add_argument("--seed", type=int, default=None, help="default: a new seed per run, so ids never collide")
    p.add_argument("--events", type=int, default=2000, help="0 = run until stopped")
    p.add_argument("--rate", type=float, default=50.0, help="events per second")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--duplicates", type=float, default=0.02, help="share of events re-sent by producers")
    p.add_argument("--day-close-every", type=int, default=0)
    p.add_argument("--master-delay", type=float, default=3.0, help="seconds to let master data settle")
    p.add_argument("--wait-for", help="worker URL: wait until it has loaded master data before the workload")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("replay", help="re-send dead letters to their source topic")
    p.add_argument("--code", help="only this error code, e.g. UNKNOWN_ITEM")
    p.add_argument("--source-topic")
    p.add_argument("--event-id", action="append", help="only these source event ids (repeatable)")
    p.add_argument("--limit", type=int)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("recon-report", help="drift of a location's latest ERP snapshot (inventory.reconciliation)")
    p.add_argument("location", help="location id, e.g. S042")
    p.add_argument("--csv", action="store_true", help="CSV rows instead of a table")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to spend reading the topic")
    p.set_defaults(func=cmd_recon_report)

    p = sub.add_parser("schemas", help="write the JSON Schema of every contract topic to docs/schemas/")
    p.add_argument("--out", help="another directory (default docs/schemas)")
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("erp-reconcile", help="the ERP ledger against finance.journal_batches, per date, "
                                             "location and account; exit 1 on any difference")
    p.add_argument("--date", help="only this business date (YYYY-MM-DD)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to spend reading the topic")
    p.set_defaults(func=cmd_erp_reconcile)

    p = sub.add_parser("erp", help="the local Tryton ERP: start, stop, status, wipe (as python -m app.erp)")
    p.add_argument("action", choices=["start", "stop", "status", "wipe", "build"])
    p.set_defaults(func=cmd_erp)

    p = sub.add_parser("run", help="the main job: broker, worker, simulated workload, dashboard")
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--keep-broker", action="store_true", help="leave the local broker and ERP running")
    p.add_argument("--run-dir", default=str(REPO_ROOT / ".run"),
                   help="where the local broker (kafka/) and the worker's data (worker/, unless DATA_DIR) live")
    p.set_defaults(func=cmd_run)

    args = parser.parse_args(argv)
    if args.command != "worker":  # the worker configures its own (logging_setup.configure)
        import logging.config
        from app.logging_setup import logging_config
        # stderr: a tool's stdout is its answer (recon-report --csv, schemas' paths)
        logging.config.dictConfig(logging_config(os.environ.get("LOG_FORMAT", "text") == "json",
                                                 stream="ext://sys.stderr"))
    from app.connection import KafkaUnavailable
    from app.settings import SettingsError
    try:
        args.func(args)
    except (KafkaUnavailable, SettingsError) as exc:  # an operator's mistake: one line, no traceback
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
