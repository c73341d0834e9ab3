"""The `alert:` trigger condition as a pure function of the book's snapshot.

A metric trigger folds numbers; an alert trigger asks one question of an immutable
`AlertSnapshot`: is a matching alert firing for this host? The answer carries the
text that the journal, notifications and `status` show, e.g.

    alert MMAMigrationRollbackTrigger firing since 2026-11-23T23:58:00Z
    {component=ModelManagerAgent, instance=main:9400, severity=critical}

and a `value` (1 firing, 0 not) so that samples, charts and `status` treat it like a
pass/fail metric. There is no `for:` here: the rule's `for` already held in
Prometheus before the alert was firing, so the trigger fires on the first reading
that sees it.

A pull source that is failing is reported as `error` (no data) but never breaches on
its own: the last view it gave is still in the snapshot, and pushes still arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config.inventory import Host
from orchestrator.core.model import AlertSpec
from orchestrator.metrics.alerts.book import AlertSnapshot, FiringAlert
from orchestrator.metrics.triggers import TriggerState, TriggerStatus, Verdict

#: seconds an alert source may fail before a `metric_nodata` notification, as for metrics
NODATA_ALERT = 120.0


@dataclass(frozen=True)
class AlertReading:
    """What the book says about one alert trigger on one host."""

    breaching: bool
    text: str
    alert: FiringAlert | None = None
    error: str | None = None  # a pull source is failing: the book may be stale

    @property
    def value(self) -> float:
        """1.0 while firing, 0.0 otherwise: the sample stored and charted."""
        return 1.0 if self.breaching else 0.0

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.alert.labels) if self.alert is not None else {}

    @property
    def since(self) -> str | None:
        """startsAt as `YYYY-MM-DDTHH:MM:SSZ`, for `status`."""
        return self.alert.since_text() if self.alert is not None else None


def describe_firing(alert: FiringAlert) -> str:
    return f"alert {alert.name} firing since {alert.since_text()} {alert.label_text()}"


def alert_reading(spec: AlertSpec, snapshot: AlertSnapshot, host: Host) -> AlertReading:
    """Pure: the same spec, snapshot and host always give the same reading."""
    alert = snapshot.firing_for(spec.name, spec.labels, spec.host_label, host)
    error = "; ".join(f"{src}: {why}" for src, why in sorted(snapshot.errors.items())) or None
    if alert is not None:
        return AlertReading(True, describe_firing(alert), alert, error)
    text = f"alert {spec.name} not firing for {host.name}"
    if error:
        text += f" (alert source failing: {error})"
    return AlertReading(False, text, None, error)


def fold_alert(state: TriggerState, reading: AlertReading, now: float,
               nodata_alert: float = NODATA_ALERT) -> tuple[TriggerState, Verdict]:
    """`triggers.evaluate` for an `alert:` trigger: firing exactly while the reading is,
    with no pending stage (the rule's `for` already held). Pure, like `evaluate`.

    `breach_since` is the monotonic time this trigger first saw the alert; the alert's
    own start is in the reading's text. A failing alert source counts as no data: it
    never breaches, and after `nodata_alert` seconds the verdict asks for one
    `metric_nodata` notification, as a metric's would."""
    nodata = reading.error is not None and not reading.breaching
    nodata_since = (state.nodata_since if state.nodata_since is not None else now) \
        if nodata else None
    alert_now = bool(nodata and nodata_since is not None and not state.nodata_alerted
                     and now - nodata_since >= nodata_alert)
    new = state._replace(last_value=reading.value, last_at=now, nodata_since=nodata_since,
                  nodata_alerted=(state.nodata_alerted or alert_now) if nodata else False,
                  last_error=reading.error)
    if not reading.breaching:
        changed = TriggerStatus.OK if state.status is not TriggerStatus.OK else None
        new = new._replace(status=TriggerStatus.OK, breach_since=None)
        return new, Verdict(False, False, None, reading.text, changed, False, alert_now)
    since = state.breach_since if state.breach_since is not None else now
    changed = TriggerStatus.FIRING if state.status is not TriggerStatus.FIRING else None
    new = new._replace(status=TriggerStatus.FIRING, breach_since=since)
    return new, Verdict(True, False, None, reading.text, changed,
                        changed is TriggerStatus.FIRING, alert_now)
