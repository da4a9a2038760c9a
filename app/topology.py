"""The pipeline in one place (SPEC §1): which stage reads which topics, holds which tables, writes which topics.

A stage is one module of agents/, the unit `STAGES=` selects (app/worker.py takes its list of
stages from here). The agents declare their own inputs (`@app.agent(topic)`); every table is
defined in tables/ (the ones a single stage writes in a module of their own, which only that stage
imports, so a worker holds the tables of the stages it runs); this module is the map.
tests/unit/test_topology.py holds it to the code: each stage's agents read exactly these topics,
its module names the topics it writes and no other, every table of the app is on the map exactly
once, and a stage's own tables are defined by importing that stage. Plain data, no Faust import,
so it reads like the SPEC's picture.
"""
from __future__ import annotations

from dataclasses import dataclass

from app import topics as t
from tables import names as table


@dataclass(frozen=True)
class Stage:
    name: str                       # the module agents/<name>.py
    reads: tuple[str, ...]          # topics its agents consume (none: a timer)
    state: tuple[str, ...]          # tables it writes (RocksDB, with a changelog each but the
                                    # trace table, a fold of internal.lineage: tables/lineage.py)
    writes: tuple[str, ...]         # topics it publishes to, besides EVERY_STAGE_WRITES


# Any stage may dead-letter a record and record trace facts (agents/outputs.py).
EVERY_STAGE_WRITES = (t.DLQ, t.LINEAGE)

PIPELINE = (
    # Operational flow: raw events → movements → positions → availability.
    Stage("ingest", reads=t.RAW_TOPICS, state=(),
          writes=(t.MOVEMENTS, t.LEDGER, t.FINANCE_EXCEPTIONS)),
    # inventory.movements is partitioned by SKU, so one batch folds a SKU's positions and its
    # channel sums together (app/domain/keys.py).
    Stage("positions", reads=(t.MOVEMENTS,), state=(table.POSITIONS, table.SKU_NETWORKS, table.SALE_COSTS),
          writes=(t.AVAILABILITY, t.CHANNEL_AVAILABILITY, t.LEDGER)),
    Stage("expiry", reads=(), state=(), writes=(t.MOVEMENTS,)),
    # Financial flow, behind the position stage on its own topic: it never holds stock back.
    Stage("finance", reads=(t.LEDGER,), state=(table.DAY_LEDGERS, table.DAY_STATUSES),
          writes=(t.POSTINGS, t.JOURNAL_BATCHES, t.FINANCE_EXCEPTIONS)),
    Stage("erp", reads=(t.JOURNAL_BATCHES,), state=(), writes=(t.ERP_ACKS, t.ERP_REJECTIONS)),
    # Master data on every worker; reconciliation against the ERP's stock ledger.
    Stage("master", reads=(t.MASTER_ITEMS, t.MASTER_LOCATIONS),
          state=(table.MASTER_ITEMS, table.MASTER_LOCATIONS, table.MASTER_ITEM_ALIASES), writes=(t.MOVEMENTS,)),
    Stage("reconciliation", reads=(t.ERP_SNAPSHOTS, t.RECON_CHECKS, t.RECON_RESULTS),
          state=(table.RECONCILIATION_SUMMARIES,),
          writes=(t.RECON_CHECKS, t.RECON_RESULTS, t.RECONCILIATION, t.MOVEMENTS, t.AUDIT)),
    # Trace of every source event, for GET /v1/trace.
    Stage("lineage", reads=(t.LINEAGE,), state=(table.LINEAGE,), writes=()),
)
