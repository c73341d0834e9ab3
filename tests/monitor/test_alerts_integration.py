"""Alerts with every part real: the shipped rules in a real Prometheus scraping an
exporter the test controls, a real Alertmanager pushing with a Bearer token to the
receiver, the pull paths (Alertmanager's API and Prometheus's ALERTS), and the
promtool tests of the shipped rules."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.inventory import Host
from orchestrator.config.project import load_project
from orchestrator.metrics.alerts.book import (
    ALERTMANAGER,
    PROMETHEUS,
    PUSH,
    AlertBook,
    FiringAlert,
)
from orchestrator.metrics.alerts.pull import AlertPuller, fetch_alertmanager
from orchestrator.metrics.alerts.receiver import AlertReceiver
from orchestrator.metrics.alerts.service import AlertService
from tests.support.alertmanager import (
    ROOT,
    MetricsServer,
    alert_lab,
    alertmanager,
    require_promtool,
    wait_for,
)
from tests.support.projects import make_project

pytestmark = pytest.mark.integration

TOKEN = "lab-token-0123456789"
MAIN = Host("main", {"ansible_host": "127.0.0.1"})
PC2 = Host("pc2", {"ansible_host": "127.0.0.2"})
THREAD = 'mma_thread_health_status{thread="model-loader"}'
COMPONENT = {"component": "ModelManagerAgent"}


def thread_alert(book: AlertBook, host: Host = MAIN) -> FiringAlert | None:
    return book.firing_for("MMAThreadUnhealthy", COMPONENT, "instance", host)


def test_a_real_rule_fires_and_alertmanager_pushes_it_with_a_bearer_token(
        tmp_path: Path) -> None:
    lines: list[str] = []
    book = AlertBook(log=lines.append)
    with MetricsServer() as agent, AlertReceiver(book, "127.0.0.1:0", TOKEN,
                                                 log=lines.append) as rx:
        agent.set(THREAD, 1)
        targets = {f"main:{agent.port}": agent.address}
        with alert_lab(tmp_path, targets, webhook_url=rx.url, token=TOKEN) as lab:
            wait_for("Prometheus to scrape the agent", lambda: _query(
                lab.prometheus_url, "mma_thread_health_status"))
            assert thread_alert(book) is None
            agent.set(THREAD, 0)  # the thread goes unhealthy: the rule's `for` is 1s here
            found = wait_for("the pushed alert", lambda: thread_alert(book))
            assert found.source == PUSH
            assert found.labels["thread"] == "model-loader"
            assert found.labels["severity"] == "critical"
            assert found.since is not None
            assert abs((datetime.now(UTC) - found.since).total_seconds()) < 60
            assert thread_alert(book, PC2) is None
            rollback = wait_for("the rollback alert", lambda: book.firing_for(
                "MMAMigrationRollbackTrigger", COMPONENT, "instance", MAIN))
            assert set(rollback.labels) == {"alertname", "instance", "severity", "component"}
            agent.set(THREAD, 1)  # healthy again: Alertmanager pushes `resolved`
            wait_for("the resolved push", lambda: thread_alert(book) is None, timeout=60)
    assert rx.counts.get(401, 0) == 0 and lines == [], lines


def test_a_push_with_the_wrong_token_changes_nothing_but_the_pull_still_sees_it(
        tmp_path: Path) -> None:
    lines: list[str] = []
    book = AlertBook()
    with MetricsServer() as agent, AlertReceiver(book, "127.0.0.1:0", TOKEN,
                                                 log=lines.append) as rx:
        agent.set(THREAD, 0)
        targets = {f"main:{agent.port}": agent.address}
        with alert_lab(tmp_path, targets, webhook_url=rx.url, token="forged") as lab:
            wait_for("Alertmanager's forged push", lambda: rx.counts.get(401))
            assert book.snapshot().alerts == () and book.version == 0
            assert any("401 wrong bearer token" in line for line in lines)
            assert all("forged" not in line for line in lines)
            # the pull reads what Alertmanager holds, with no token involved
            assert lab.alertmanager_url is not None
            puller = AlertPuller(book, {"MMAThreadUnhealthy"},
                                 alertmanager_url=lab.alertmanager_url, timeout=2)
            wait_for("the pulled alert", lambda: puller.poll() is None and thread_alert(book))
            found = thread_alert(book)
            assert found is not None and found.source == ALERTMANAGER


def test_the_pull_through_prometheus_alerts_without_alertmanager(tmp_path: Path) -> None:
    book = AlertBook()
    with MetricsServer() as agent:
        agent.set(THREAD, 1)
        targets = {f"main:{agent.port}": agent.address}
        with alert_lab(tmp_path, targets, webhook_url=None, token=None) as lab:
            puller = AlertPuller(book, ["MMAThreadUnhealthy", "MMAMigrationRollbackTrigger"],
                                 prometheus_url=lab.prometheus_url, timeout=2)
            wait_for("Prometheus to scrape the agent", lambda: _query(
                lab.prometheus_url, "mma_thread_health_status"))
            assert puller.poll() is None and book.snapshot().alerts == ()
            agent.set(THREAD, 0)
            wait_for("ALERTS firing", lambda: puller.poll() is None and thread_alert(book))
            found = thread_alert(book)
            assert found is not None and found.source == PROMETHEUS
            assert "alertstate" not in found.labels and found.labels["thread"] == "model-loader"
            first_since = found.since
            assert first_since is not None
            puller.poll()
            again = thread_alert(book)
            assert again is not None and again.since == first_since  # first seen, kept
            agent.set(THREAD, 1)
            wait_for("ALERTS resolved", lambda: puller.poll() is None
                     and thread_alert(book) is None)
        assert puller.poll() is not None  # Prometheus gone: an error, the view kept
        assert PROMETHEUS in book.snapshot().errors


def test_alertmanager_pull_reads_active_alerts_only(tmp_path: Path) -> None:
    with alertmanager(tmp_path, "http://127.0.0.1:9/alerts", None) as am:
        body = json.dumps([
            {"labels": {"alertname": "MMAThreadUnhealthy", "instance": "main:17101",
                        "component": "ModelManagerAgent"},
             "startsAt": "2026-11-23T23:58:00Z"},
            {"labels": {"alertname": "MMAThreadUnhealthy", "instance": "pc2:17201"},
             "startsAt": "2026-11-23T23:50:00Z", "endsAt": "2026-11-23T23:55:00Z"},
        ]).encode()
        req = urllib.request.Request(f"{am.url}/api/v2/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).close()
        alerts = wait_for("Alertmanager to list the alert",
                          lambda: fetch_alertmanager(am.url, 2))
        assert [a.labels["instance"] for a in alerts] == ["main:17101"]  # resolved one left out
        assert alerts[0].since == datetime(2026, 11, 23, 23, 58, tzinfo=UTC)


def test_the_service_wires_push_and_pull_from_migration_yaml(tmp_path: Path) -> None:
    from tests.support.prom import free_port

    port = free_port()  # the receiver's: Alertmanager is configured before it listens
    with MetricsServer() as agent:
        agent.set(THREAD, 1)
        targets = {f"main:{agent.port}": agent.address}
        with alert_lab(tmp_path, targets, webhook_url=f"http://127.0.0.1:{port}/alerts",
                       token=TOKEN) as lab:
            proj = make_project(tmp_path, migration=(
                "name: alerts\ninventory: inventory/hosts.yml\npoll_interval: 1s\n"
                f"alertmanager:\n  listen: 127.0.0.1:{port}\n"
                f"  token_env: MIGRATE_TEST_TOKEN\n  url: {lab.alertmanager_url}\n"
                "triggers:\n  thread_alert:\n    alert: MMAThreadUnhealthy\n"
                "    match: {component: ModelManagerAgent}\n"))
            proj.phase(1, "p", "phase: 1\nsteps:\n  - id: w\n    wait: 1s\n")
            project, _ = load_project(proj.root)
            lines: list[str] = []
            service = AlertService.for_triggers(project, project.triggers.values(),
                                                log=lines.append,
                                                environ={"MIGRATE_TEST_TOKEN": TOKEN})
            assert service is not None
            assert service.describe() == [
                f"alerts: receiving Alertmanager pushes at http://127.0.0.1:{port}/alerts "
                "(Bearer token required)",
                f"alerts: polling Alertmanager {lab.alertmanager_url}/api/v2/alerts every 1s"]
            trigger = project.triggers["thread_alert"]
            changes: list[object] = []
            service.on_change(changes.append)
            with service:
                assert service.puller is not None and service.puller.pulls == 1  # at start
                assert not service.reading(trigger, MAIN).breaching
                agent.set(THREAD, 0)
                reading = wait_for("the alert trigger's reading", lambda: (
                    r := service.reading(trigger, MAIN)).breaching and r)
                assert reading.text.startswith("alert MMAThreadUnhealthy firing since ")
                assert "component=ModelManagerAgent" in reading.text
                assert "thread=model-loader" in reading.text
                assert not service.reading(trigger, PC2).breaching
                assert changes
            assert service.receiver is not None and service.receiver.counts.get(200)
            assert lines == [], lines


def test_promtool_tests_of_the_shipped_rules_pass() -> None:
    promtool = require_promtool()
    tests = sorted(str(p) for p in (ROOT / "deploy/prometheus/tests").glob("*.yml"))
    assert tests
    res = subprocess.run([promtool, "test", "rules", *tests], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([promtool, "check", "rules",
                          *map(str, (ROOT / "deploy/prometheus/rules").glob("*.yml"))],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_shipped_alertmanager_config_is_valid() -> None:
    import shutil

    amtool = shutil.which("amtool")
    if amtool is None:
        require_promtool()  # same package family: skip or fail alike
        pytest.skip("amtool is not installed")
    res = subprocess.run([amtool, "check-config",
                          str(ROOT / "deploy/prometheus/alertmanager.yml")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# --- helpers ----------------------------------------------------------------------------
def _query(url: str, promql: str) -> list[dict[str, object]]:
    from tests.support.prom import query

    try:
        return query(url, promql)
    except OSError:
        return []
