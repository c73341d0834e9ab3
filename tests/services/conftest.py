"""Fixtures of the services floor (watch, observation): a project whose triggers read the
stand-in agent endpoint the test controls."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.projects import Proj, make_project
from tests.support.servers import AgentServer

WATCHED = """\
name: watched
inventory: inventory/hosts.yml
poll_interval: 300ms
metrics:
  failures:
    source: http
    url: '{agent}/health'
    field: model_load_failures
  health:
    source: http
    url: '{agent}/health'
    expect: {{status: ok}}
triggers:
  model_load_failure: {{metric: failures, increase: 0}}
  health_failure: {{metric: health, failing: true, for: 1s}}
"""


@pytest.fixture
def watched_project(tmp_path: Path, agent: AgentServer) -> Proj:
    """A project on host main whose triggers read `agent`'s /health every 300 ms: any
    increase of model-load failures, and health failing for 1 s."""
    return make_project(tmp_path, migration=WATCHED.format(agent=agent.url))
