"""The map of the pipeline (app/topology.py) is the pipeline: checked against the agents and tables."""
from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys

import faust
import pytest

import app.faust_app as faust_app
from app.topology import EVERY_STAGE_WRITES, PIPELINE
from app.worker import STAGES
from tables import names as table

HANDLES = {name: handle.topics[0] for name, handle in vars(faust_app).items() if isinstance(handle, faust.TopicT)}
MODULES = {stage.name: importlib.import_module(f"agents.{stage.name}") for stage in PIPELINE}


def test_every_stage_the_worker_runs_is_on_the_map_once():
    assert sorted(stage.name for stage in PIPELINE) == sorted(STAGES)


@pytest.mark.parametrize("stage", PIPELINE, ids=lambda stage: stage.name)
def test_a_stages_agents_read_the_topics_on_the_map(stage):
    read = {topic for agent in faust_app.app.agents.values() if agent.fun.__module__ == MODULES[stage.name].__name__
            for topic in agent.channel.topics}
    assert read == set(stage.reads)


@pytest.mark.parametrize("stage", PIPELINE, ids=lambda stage: stage.name)
def test_a_stage_refers_to_the_topics_it_writes_and_to_no_other(stage):
    # Through the app's topic handles (app/faust_app.py): what the module names, it reads or writes.
    source = inspect.getsource(MODULES[stage.name])
    named = {topic for name, topic in HANDLES.items() if re.search(rf"\b{name}\b", source)}
    assert named <= set(stage.reads) | set(stage.writes)
    assert set(stage.writes) - set(EVERY_STAGE_WRITES) <= named


def test_every_table_belongs_to_exactly_one_stage():
    owned = [table for stage in PIPELINE for table in stage.state]
    assert sorted(owned) == sorted(faust_app.app.tables.keys())


def test_no_agent_module_defines_a_table():
    # Tables live in tables/; a stage imports the ones it writes.
    for stage, module in MODULES.items():
        source = inspect.getsource(module)
        assert not re.search(r"\b(make_table|RecordTable|CachedRecordTable|Table|GlobalTable)\(", source), stage


def test_a_worker_holds_a_stages_own_tables_only_when_it_runs_the_stage():
    # What every worker imports whatever its STAGES (the web views, the shared tables) defines only
    # the shared tables; each other table comes with the one stage whose module imports it.
    shared = {table.POSITIONS, table.MASTER_ITEMS, table.MASTER_LOCATIONS, table.MASTER_ITEM_ALIASES}
    code = ("import json, sys; from app.worker import load_stages; "
            "app = load_stages(tuple(sys.argv[1:])); print(json.dumps(sorted(app.tables.keys())))")
    for running in (("ingest",), ("positions",), ("finance", "lineage")):
        out = subprocess.run([sys.executable, "-c", code, *running], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "STAGES": ""})
        assert out.returncode == 0, out.stderr[-2000:]
        held = set(json.loads(out.stdout.strip().splitlines()[-1]))
        own = {name for stage in PIPELINE if stage.name in running for name in stage.state}
        assert held == shared | own, running
