"""What the operator reads: live view, status and history, run reports.

`show_value` is how every one of them writes a metric's value: `pass`/`fail` for a
pass/fail metric (SPEC section 3: never 0/1), `firing`/`not firing` for an `alert:`
trigger (stored as 1/0), `no data` for none, else the number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.core.model import Project

PASSFAIL = "pass/fail"
#: an `alert:` trigger's value: 1 while its alert is firing for the host, else 0
ALERT = "alert"
#: the prefix of an `alert:` trigger's samples' metric (`alert:NAME`) in the journal
ALERT_METRIC = "alert:"


def trigger_kinds(project: Project) -> dict[str, str]:
    """Trigger name -> how its value reads: `alert`, `pass/fail` or `number`."""
    out = {}
    for name, t in project.triggers.items():
        metric = project.metrics.get(t.metric) if t.metric else None
        if t.alert is not None:
            out[name] = ALERT
        elif metric is not None:
            out[name] = metric.kind.value
    return out


def looks_passfail(value: Any, threshold: Any) -> bool:
    """A pass/fail trigger's reading when the metric's kind is not known: no limit to
    compare with, and 1 (pass) or 0 (fail)."""
    return threshold is None and isinstance(value, int | float) and value in (0, 1)


def show_value(value: Any, kind: str | None = None, threshold: Any = None) -> str:
    """A metric's value as a person reads it. `kind` is the metric's (`pass/fail` or
    `number`); without it a value with no limit that is 0 or 1 counts as pass/fail."""
    if value is None:
        return "no data"
    if kind == ALERT:
        return "firing" if value else "not firing"
    if kind == PASSFAIL or (kind is None and looks_passfail(value, threshold)):
        return "pass" if value else "fail"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)
