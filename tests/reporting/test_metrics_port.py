"""`--metrics-port`: App starts MigrateMetrics when the engine's parts are built (never in a
constructor), declares every host and phase at its journaled state, and its ExitStack
closes the server; phase, watch and rehearse all take the option."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.app import App
from orchestrator.cli import cli
from orchestrator.telemetry.web_config import MetricsListen
from tests.support.projects import make_project

PHASE = ("phase: 1\nsteps:\n  - id: one\n    command: 'true'\n"
         "    rollback_command: 'true'\n")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        return str(r.read().decode())


def test_app_serves_while_open_and_closes_the_server(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "one", PHASE)
    app = App(root=proj.root, metrics_at=MetricsListen("127.0.0.1", 0))
    assert app.serve_metrics is not None and app._metrics is None  # nothing at construction
    with app:
        app.parts()
        metrics = app._metrics
        assert metrics is not None and metrics.port
        port = metrics.port
        body = scrape(port)
        assert 'migrate_phase_state{host="main",migration="test-migration",phase="1",state="pending"} 1.0' \
            in body
        assert 'migrate_watch_active{migration="test-migration"} 0.0' in body
        assert app.parts() is app.parts() and app._metrics is metrics  # served once
    with pytest.raises(OSError):
        scrape(port)


def test_without_a_port_nothing_is_served(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "one", PHASE)
    with App(root=proj.root) as app:
        app.parts()
        assert app._metrics is None


@pytest.mark.parametrize("command", ["phase", "watch", "rehearse"])
def test_the_commands_take_metrics_port(command: str) -> None:
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0 and "--metrics-port" in res.output
