"""The map of the pipeline (app/topology.py) is the pipeline: checked against the agents and tables."""
from __future__ import annotations

import importlib
import inspect
import re

import faust
import pytest

import app.faust_app as faust_app
from app.topology import EVERY_STAGE_WRITES, PIPELINE
from app.worker import STAGES

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
