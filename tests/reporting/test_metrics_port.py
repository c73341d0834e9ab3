"""`--metrics-port`: App starts MigrateMetrics when the engine's parts are built (never in a
constructor), declares every host and phase at its journaled state, and its ExitStack
closes the server; phase, watch and rehearse all take the option."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
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


def migrate(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=root,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["watch", "--once"], ["phase", "1"]])
def test_a_port_in_use_is_bad_configuration_and_nothing_runs(tmp_path: Path,
                                                             command: list[str]) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "one", PHASE)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = migrate(proj.root, *command, "--host", "main", "--metrics-port", str(port))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"<command line>:0: --metrics-port/--metrics-listen: cannot serve /metrics on "
        f"127.0.0.1:{port}: Address already in use"]
    history = migrate(proj.root, "history", "--output", "json")
    assert history.returncode == 0 and json.loads(history.stdout) == {"events": []}


@pytest.mark.parametrize(("listen", "reason"), [
    ("192.0.2.1:9464", "Cannot assign requested address"),  # TEST-NET-1: not this machine's
    ("no-such-host.invalid:9464", ""),  # the resolver's words vary: "Name or service..."
])
def test_an_address_it_cannot_listen_on_is_bad_configuration(tmp_path: Path, listen: str,
                                                             reason: str) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "one", PHASE)
    res = migrate(proj.root, "phase", "1", "--host", "main", "--metrics-listen", listen)
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("<command line>:0: --metrics-port/--metrics-listen: cannot serve "
                           f"/metrics on {listen}: {reason}")
    assert "Traceback" not in res.stderr + res.stdout
    history = migrate(proj.root, "history", "--output", "json")
    assert json.loads(history.stdout) == {"events": []}
