"""Worker entry point: registers the selected stages' agents on the app and runs a Faust worker."""
from __future__ import annotations

import asyncio
import gc
import importlib
import os
import sys

from app.stop_deadline import StopDeadline
from app.topology import PIPELINE

# Every stage of the pipeline's map, one agents module each. STAGES (comma-separated, default all)
# runs a subset: the benchmark runs the position stage alone with `STAGES=positions,master`.
STAGES = tuple(sorted(stage.name for stage in PIPELINE))


def selected_stages(raw: str | None) -> tuple[str, ...]:
    if not raw or not raw.strip():
        return STAGES
    wanted = {s.strip() for s in raw.split(",") if s.strip()}
    unknown = wanted - set(STAGES)
    if unknown:
        raise SystemExit(f"STAGES names unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in wanted)


def load_stages(stages: tuple[str, ...] | None = None):
    """Import the agent modules: importing registers their agents, tables and timers on the app."""
    from app.faust_app import settings
    for stage in stages or selected_stages(os.environ.get("STAGES")):
        if stage == "erp" and not (settings.erp_enabled and settings.erp_url):
            # No ERP named (ERP_URL) or posting switched off: batches wait on their topic.
            print("ERP poster off (ERP_ENABLED=0 or no ERP_URL): journal batches are not posted", file=sys.stderr)
            continue
        importlib.import_module(f"agents.{stage}")
    import app.web.channels  # noqa: F401
    import app.web.dashboard  # noqa: F401
    import app.web.dlq  # noqa: F401
    import app.web.erp  # noqa: F401
    import app.web.health  # noqa: F401
    import app.web.master  # noqa: F401
    import app.web.positions  # noqa: F401
    import app.web.reconciliation  # noqa: F401
    import app.web.schemas  # noqa: F401
    import app.web.stats  # noqa: F401
    import app.web.trace  # noqa: F401
    from app.faust_app import app as faust_app
    return faust_app


def changelog_topics(app) -> list[str]:
    return [f"{app.conf.id}-{table.name}-changelog" for table in app.tables.values()]


def declare_topics(app, settings) -> None:
    """Contract topics and this app's changelogs exist, with the right partitions, before Faust starts."""
    from app.kafka_io import create_topics
    asyncio.run(create_topics(settings.kafka, settings.topic_partitions, changelog_topics(app),
                              group=settings.app_id, replication=settings.topic_replication,
                              audit_retention_ms=settings.audit_retention_ms))


def main(argv: list[str] | None = None) -> None:
    from app import logging_setup
    from app.faust_app import settings
    app = load_stages()
    declare_topics(app, settings)
    logging_setup.configure(app, settings)
    # Most of a worker's heap lives as long as it does (modules, Faust's services, cached master data):
    # keep what exists now out of every collection, and collect the young generation every 50,000
    # allocations instead of 700. Measured on the position stage (`bench.run --only throughput
    # --systems positions --runs 1`): 1,087 movements/s before, 1,704 after.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # A stop that cannot finish (the broker gone) ends the process at STOP_TIMEOUT (RELIABILITY.md §6).
    app.stop_deadline = StopDeadline(settings.stop_timeout, app.what_the_stop_waits_on)
    loglevel = "info"
    sys.argv = ["stock-sync", "worker", "-l", loglevel, *(argv or [])]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1:])
