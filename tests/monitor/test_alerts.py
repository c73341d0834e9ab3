"""Alerts as triggers, the pure parts: host matching, the book's push/pull rules, the
`alert:` condition's reading, the webhook parser, and `migration.yaml` validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.config.inventory import Host
from orchestrator.config.project import load_project
from orchestrator.core.model import AlertSpec, Condition
from orchestrator.metrics.alerts.book import (
    ALERTMANAGER,
    PROMETHEUS,
    PUSH,
    AlertBook,
    BookChange,
    FiringAlert,
)
from orchestrator.metrics.alerts.condition import alert_reading
from orchestrator.metrics.alerts.matching import alert_matches
from orchestrator.metrics.alerts.receiver import WebhookError, parse_webhook
from tests.support.projects import make_project

MAIN = Host("main", {"ansible_host": "10.0.0.5"})
PC2 = Host("pc2", {"ansible_host": "10.0.0.6"})
T0 = datetime(2026, 11, 23, 23, 58, tzinfo=UTC)


def alert(name: str = "MMAMigrationRollbackTrigger", instance: str = "main:9400",
          since: datetime | None = T0, **labels: str) -> FiringAlert:
    full = {"alertname": name, "instance": instance, "severity": "critical",
            "component": "ModelManagerAgent", **labels}
    return FiringAlert(name, full, since, PUSH)


# --- matching -------------------------------------------------------------------------
def test_host_matched_by_name_or_ansible_host_ignoring_port_and_case() -> None:
    labels = {"alertname": "A", "instance": "MAIN:9400", "component": "x"}
    assert alert_matches(labels, "A", {}, "instance", MAIN)
    assert not alert_matches(labels, "A", {}, "instance", PC2)
    by_address = {"alertname": "A", "instance": "10.0.0.5:9100"}
    assert alert_matches(by_address, "A", {}, "instance", MAIN)
    assert not alert_matches(by_address, "B", {}, "instance", MAIN)  # name must be equal
    assert alert_matches(labels, "A", {"component": "x"}, "instance", MAIN)
    assert not alert_matches(labels, "A", {"component": "y"}, "instance", MAIN)
    assert not alert_matches(labels, "A", {"team": "x"}, "instance", MAIN)  # label absent
    dcgm = {"alertname": "A", "Hostname": "main", "instance": "dcgm:9400"}
    assert alert_matches(dcgm, "A", {}, "Hostname", MAIN)
    assert not alert_matches(dcgm, "A", {}, "instance", MAIN)
    assert not alert_matches({"alertname": "A"}, "A", {}, "instance", MAIN)  # names no host


# --- the book -------------------------------------------------------------------------
def test_push_fires_and_resolved_clears_with_one_callback_each() -> None:
    book = AlertBook()
    changes: list[BookChange] = []
    book.subscribe(changes.append)
    a = alert()
    book.apply_push([("firing", a)])
    assert book.firing_for(a.name, {"component": "ModelManagerAgent"}, "instance", MAIN)
    assert book.firing_for(a.name, {}, "instance", PC2) is None
    book.apply_push([("firing", a)])  # Alertmanager repeats: no new change
    book.apply_push([("resolved", a)])
    assert book.firing_for(a.name, {}, "instance", MAIN) is None
    assert [(len(c.fired), len(c.resolved), c.source) for c in changes] == [
        (1, 0, PUSH), (0, 1, PUSH)]


def test_pull_replaces_its_view_and_merges_with_push() -> None:
    book = AlertBook()
    pushed = alert(instance="main:9400")
    book.apply_push([("firing", pushed)])
    pulled = alert(instance="pc2:9400")
    book.replace_view(PROMETHEUS, [pulled])
    snap = book.snapshot()
    assert {a.labels["instance"] for a in snap.alerts} == {"main:9400", "pc2:9400"}
    book.replace_view(PROMETHEUS, [])  # the pull no longer sees pc2's alert
    assert book.firing_for(pulled.name, {}, "instance", PC2) is None
    assert book.firing_for(pushed.name, {}, "instance", MAIN) is not None  # push untouched


def test_prometheus_alerts_since_is_first_seen_and_kept() -> None:
    now = [T0]
    book = AlertBook(wall=lambda: now[0])
    book.replace_view(PROMETHEUS, [alert(since=None)])
    now[0] = datetime(2026, 11, 24, tzinfo=UTC)
    book.replace_view(PROMETHEUS, [alert(since=None)])
    found = book.firing_for("MMAMigrationRollbackTrigger", {}, "instance", MAIN)
    assert found is not None and found.since == T0


def test_merged_since_is_the_earliest_start() -> None:
    book = AlertBook()
    book.apply_push([("firing", alert(since=datetime(2026, 11, 24, tzinfo=UTC)))])
    book.replace_view(ALERTMANAGER, [alert(since=T0)])
    found = book.firing_for("MMAMigrationRollbackTrigger", {}, "instance", MAIN)
    assert found is not None and found.since == T0
    assert len(book.snapshot().alerts) == 1


def test_failed_pull_keeps_the_last_view_and_says_why() -> None:
    book = AlertBook()
    book.replace_view(ALERTMANAGER, [alert()])
    book.pull_failed(ALERTMANAGER, "connection refused")
    snap = book.snapshot()
    assert len(snap.alerts) == 1 and snap.errors == {ALERTMANAGER: "connection refused"}
    book.replace_view(ALERTMANAGER, [alert()])
    assert book.snapshot().errors == {}


def test_alertmanager_pull_prunes_pushes_it_no_longer_has_but_not_newer_ones() -> None:
    clock = [100.0]
    book = AlertBook(monotonic=lambda: clock[0])
    stale = alert(instance="main:9400")
    book.apply_push([("firing", stale)])  # its `resolved` push will be lost
    clock[0] = 105.0
    other = alert(name="MMAThreadUnhealthy", instance="main:9400")
    book.apply_push([("firing", other)])
    fresh = alert(instance="pc2:9400")
    clock[0] = 110.0
    book.apply_push([("firing", fresh)])  # arrived after the pull was sent
    book.replace_view(ALERTMANAGER, [], requested_at=108.0,
                      scope={"MMAMigrationRollbackTrigger"})
    names = {(a.name, a.labels["instance"]) for a in book.snapshot().alerts}
    assert names == {("MMAThreadUnhealthy", "main:9400"),  # outside the pull's scope
                     ("MMAMigrationRollbackTrigger", "pc2:9400")}  # newer than the pull


def test_a_failing_subscriber_is_logged_and_others_still_called() -> None:
    lines: list[str] = []
    book = AlertBook(log=lines.append)
    seen: list[BookChange] = []

    def broken(change: BookChange) -> None:
        raise RuntimeError("boom")

    book.subscribe(broken)
    unsubscribe = book.subscribe(seen.append)
    book.apply_push([("firing", alert())])
    assert len(seen) == 1 and len(lines) == 1 and "boom" in lines[0]
    unsubscribe()
    book.apply_push([("resolved", alert())])
    assert len(seen) == 1


def test_wait_changed_returns_at_once_on_a_newer_version() -> None:
    book = AlertBook()
    v = book.version
    book.apply_push([("firing", alert())])
    assert book.wait_changed(v, 5) > v
    assert book.wait_changed(book.version, 0.01) == book.version


# --- the condition ----------------------------------------------------------------------
def test_alert_reading_says_labels_and_since() -> None:
    book = AlertBook()
    spec = AlertSpec("MMAMigrationRollbackTrigger", (("component", "ModelManagerAgent"),))
    idle = alert_reading(spec, book.snapshot(), MAIN)
    assert not idle.breaching and idle.value == 0.0 and idle.alert is None
    assert idle.text == "alert MMAMigrationRollbackTrigger not firing for main"
    book.apply_push([("firing", alert())])
    r = alert_reading(spec, book.snapshot(), MAIN)
    assert r.breaching and r.value == 1.0
    assert r.text == ("alert MMAMigrationRollbackTrigger firing since 2026-11-23T23:58:00Z "
                      "{component=ModelManagerAgent, instance=main:9400, severity=critical}")
    assert r.since == "2026-11-23T23:58:00Z" and r.labels["severity"] == "critical"
    assert not alert_reading(spec, book.snapshot(), PC2).breaching
    other = AlertSpec("MMAMigrationRollbackTrigger", (("component", "Other"),))
    assert not alert_reading(other, book.snapshot(), MAIN).breaching
    book.pull_failed(ALERTMANAGER, "timed out")
    r2 = alert_reading(spec, book.snapshot(), PC2)
    assert not r2.breaching and r2.error == "alertmanager: timed out"
    assert "alert source failing" in r2.text


def test_the_oldest_matching_alert_is_the_one_reported() -> None:
    book = AlertBook()
    book.apply_push([("firing", alert(name="MMAThreadUnhealthy", thread="b",
                                      since=datetime(2026, 11, 24, tzinfo=UTC))),
                     ("firing", alert(name="MMAThreadUnhealthy", thread="a", since=T0))])
    r = alert_reading(AlertSpec("MMAThreadUnhealthy"), book.snapshot(), MAIN)
    assert r.alert is not None and r.alert.labels["thread"] == "a"


def test_fold_alert_fires_on_the_first_reading_and_resolves() -> None:
    from orchestrator.metrics.alerts.condition import AlertReading, fold_alert
    from orchestrator.metrics.triggers import TriggerState, TriggerStatus

    idle = AlertReading(False, "alert A not firing for main")
    firing = AlertReading(True, "alert A firing since 2026-11-23T23:58:00Z {}", alert())
    s0 = TriggerState()
    s1, v1 = fold_alert(s0, idle, 10.0)
    assert v1.changed_to is None and not v1.breaching and s1.last_value == 0.0
    s2, v2 = fold_alert(s1, firing, 11.0)  # no pending stage: fires at once
    assert v2.fired and v2.changed_to is TriggerStatus.FIRING and v2.text == firing.text
    assert s2.status is TriggerStatus.FIRING and s2.breach_since == 11.0 and s2.last_value == 1.0
    s3, v3 = fold_alert(s2, firing, 12.0)
    assert not v3.fired and v3.changed_to is None and s3.breach_since == 11.0
    s4, v4 = fold_alert(s3, idle, 13.0)
    assert v4.changed_to is TriggerStatus.OK and s4.breach_since is None


def test_fold_alert_reports_a_failing_source_once_after_nodata_alert() -> None:
    from orchestrator.metrics.alerts.condition import AlertReading, fold_alert
    from orchestrator.metrics.triggers import TriggerState, TriggerStatus

    stale = AlertReading(False, "alert A not firing", None, "alertmanager: refused")
    state, v = fold_alert(TriggerState(), stale, 0.0, nodata_alert=120)
    assert not v.breaching and not v.nodata_alert and state.last_error == "alertmanager: refused"
    state, v = fold_alert(state, stale, 119.0, nodata_alert=120)
    assert not v.nodata_alert
    state, v = fold_alert(state, stale, 121.0, nodata_alert=120)
    assert v.nodata_alert and state.status is TriggerStatus.OK
    state, v = fold_alert(state, stale, 200.0, nodata_alert=120)
    assert not v.nodata_alert  # once


# --- the webhook body ------------------------------------------------------------------
def webhook(*alerts: object, version: str = "4") -> bytes:
    return json.dumps({"version": version, "status": "firing", "receiver": "migrate",
                       "groupLabels": {}, "commonLabels": {}, "alerts": list(alerts)}).encode()


GOOD = {"status": "firing", "labels": {"alertname": "A", "instance": "main:9400"},
        "annotations": {"summary": "s"}, "startsAt": "2026-11-23T23:58:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph",
        "fingerprint": "072d7d30cdfa5668"}


def test_parse_webhook_reads_alertmanager_json() -> None:
    [(status, a)] = parse_webhook(webhook(GOOD))
    assert status == "firing" and a.name == "A" and a.labels["instance"] == "main:9400"
    assert a.since == datetime(2026, 11, 23, 23, 58, 0, 123456, tzinfo=UTC)
    assert a.annotations == {"summary": "s"}
    [(status, a)] = parse_webhook(webhook({**GOOD, "status": "resolved"}))
    assert status == "resolved"


@pytest.mark.parametrize("body", [
    b"not json", b"\xff\xfe", b"[]", webhook(GOOD, version="3"),
    json.dumps({"version": "4"}).encode(),
    webhook({**GOOD, "status": "pending"}),
    webhook({**GOOD, "labels": {"instance": "main"}}),
    webhook({**GOOD, "labels": {"alertname": "A", "n": 1}}),
    webhook({**GOOD, "startsAt": "yesterday"}),
    webhook({**GOOD, "startsAt": "2026-11-23T23:58:00"}),
    webhook("an alert"),
])
def test_parse_webhook_refuses_what_is_not_alertmanager_json(body: bytes) -> None:
    with pytest.raises(WebhookError):
        parse_webhook(body)


# --- migration.yaml ---------------------------------------------------------------------
ALERT_PROJECT = """\
name: alerts
inventory: inventory/hosts.yml
poll_interval: 1s
alertmanager:
  listen: 127.0.0.1:9095
  token_env: MIGRATE_ALERT_TOKEN
  url: http://127.0.0.1:9093
triggers:
  mma_rollback_alert:
    alert: MMAMigrationRollbackTrigger
    match: {component: ModelManagerAgent, gpu: 0}
    host_label: Hostname
    action: notify
"""
PHASE = "phase: 1\nsteps:\n  - id: w\n    wait: 1s\n"


def test_an_alert_trigger_and_alertmanager_load(tmp_path: Path) -> None:
    proj = make_project(tmp_path, migration=ALERT_PROJECT)
    proj.phase(1, "p", PHASE)
    project, _ = load_project(proj.root)
    t = project.triggers["mma_rollback_alert"]
    assert t.condition is Condition.ALERT and t.metric == ""
    assert t.alert == AlertSpec("MMAMigrationRollbackTrigger",
                                (("component", "ModelManagerAgent"), ("gpu", "0")), "Hostname")
    assert t.describe() == ('alert MMAMigrationRollbackTrigger{component="ModelManagerAgent", '
                            'gpu="0"} firing for the host (label Hostname) -> notify')
    am = project.alertmanager
    assert am is not None and am.listen == "127.0.0.1:9095"
    assert am.token_env == "MIGRATE_ALERT_TOKEN" and am.url == "http://127.0.0.1:9093"
    assert project.phases[1].triggers == ("mma_rollback_alert",)


def test_host_label_defaults_to_instance_and_prometheus_alone_is_a_source(
        tmp_path: Path) -> None:
    proj = make_project(tmp_path, migration=(
        "name: a\ninventory: inventory/hosts.yml\nprometheus: {url: http://127.0.0.1:9090}\n"
        "triggers:\n  t: {alert: MMAThreadUnhealthy}\n"))
    proj.phase(1, "p", PHASE)
    project, _ = load_project(proj.root)
    assert project.triggers["t"].alert == AlertSpec("MMAThreadUnhealthy", (), "instance")
    assert project.alertmanager is None


def problems(tmp_path: Path, migration: str) -> list[str]:
    proj = make_project(tmp_path, migration=migration)
    proj.phase(1, "p", PHASE)
    with pytest.raises(ConfigError) as info:
        load_project(proj.root)
    return [str(p) for p in info.value.problems]


HEAD = "name: a\ninventory: inventory/hosts.yml\n"
AM = "alertmanager: {listen: 127.0.0.1:9095}\n"


@pytest.mark.parametrize(("body", "expected"), [
    (AM + "metrics:\n  m: {source: scripted, values: [{at: 0s, value: 1}]}\n"
     "triggers:\n  t:\n    alert: A\n    metric: m\n",
     "migration.yaml:9: trigger 't': an alert trigger takes no metric"),
    (AM + "triggers:\n  t:\n    alert: A\n    for: 1m\n",
     "migration.yaml:7: trigger 't': for: is the alert rule's business; set `for` in the "
     "Prometheus rule"),
    (AM + "triggers:\n  t:\n    alert: A\n    above: 3\n",
     "migration.yaml:7: trigger 't' must hold exactly one condition"),
    (AM + "triggers:\n  t:\n    alert: A\n    baseline: pre\n",
     "migration.yaml:7: trigger 't': baseline does not apply to an alert trigger"),
    (AM + "triggers:\n  t:\n    alert: A\n    mach: {a: b}\n",
     "migration.yaml:7: unknown key 'mach' in trigger 't' (did you mean 'match'?)"),
    (AM + "triggers:\n  t:\n    alert: A\n    match: [a]\n",
     "migration.yaml:7: match in trigger 't' must be a mapping"),
    (AM + "triggers:\n  t:\n    alert: A\n    match:\n      bad-label: x\n",
     "migration.yaml:8: trigger 't': match: 'bad-label' is not a label name"),
    (AM + "triggers:\n  t:\n    alert: A\n    match:\n      ok: true\n",
     "migration.yaml:8: trigger 't': match: ok must be a string (quote it), not True"),
    (AM + "triggers:\n  t:\n    alert: A\n    host_label: 'in stance'\n",
     "migration.yaml:7: trigger 't': host_label must be a label name"),
    (AM + "triggers:\n  t:\n    alert: ''\n",
     "migration.yaml:6: alert in trigger 't' must be a non-empty string"),
    (AM + "triggers:\n  t:\n    alert: A\n    action: explode\n",
     "migration.yaml:7: trigger 't': action must be rollback, notify or pause"),
    ("triggers:\n  t:\n    alert: A\n",
     "migration.yaml:5: trigger 't': an alert trigger needs alertmanager (listen or url) or "
     "prometheus.url to read alerts from"),
    ("alertmanager:\n  listen: 0.0.0.0:9095\n",
     "migration.yaml:4: alertmanager: listen 0.0.0.0:9095 is not a loopback address: set "
     "token_env (a Bearer token is required)"),
    ("alertmanager:\n  listen: ':9095'\n",
     "migration.yaml:4: alertmanager: listen :9095 is not a loopback address"),
    ("alertmanager:\n  listen: 9095\n",
     "migration.yaml:4: listen in alertmanager must be a non-empty string"),
    ("alertmanager:\n  listen: localhost\n",
     "migration.yaml:4: alertmanager: listen: 'localhost' is not HOST:PORT"),
    ("alertmanager:\n  listen: 127.0.0.1:0\n",
     "migration.yaml:4: alertmanager: listen: '127.0.0.1:0' must name a port"),
    ("alertmanager:\n  listen: 127.0.0.1:9095\n  token_env: MY-TOKEN\n",
     "migration.yaml:5: alertmanager: token_env 'MY-TOKEN' is not an environment variable"),
    ("alertmanager:\n  url: alertmanager:9093\n",
     "migration.yaml:4: alertmanager: url 'alertmanager:9093' must start with http://"),
    ("alertmanager: {}\n",
     "migration.yaml:3: alertmanager needs listen (push receiver), url (poll) or both"),
    ("alertmanager:\n  listen: 127.0.0.1:9095\n  tokenenv: X\n",
     "migration.yaml:5: unknown key 'tokenenv' in alertmanager (did you mean 'token_env'?)"),
])
def test_alert_config_problems_point_at_file_and_line(tmp_path: Path, body: str,
                                                      expected: str) -> None:
    found = problems(tmp_path, HEAD + body)
    assert any(p.startswith(expected) for p in found), found


def test_non_loopback_listen_with_a_token_env_is_fine(tmp_path: Path) -> None:
    proj = make_project(tmp_path, migration=HEAD + (
        "alertmanager: {listen: '0.0.0.0:9095', token_env: MIGRATE_ALERT_TOKEN}\n"
        "triggers:\n  t: {alert: A}\n"))
    proj.phase(1, "p", PHASE)
    project, _ = load_project(proj.root)
    assert project.alertmanager is not None and project.alertmanager.listen == "0.0.0.0:9095"
