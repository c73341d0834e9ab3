"""Turns journaled run events into webhook notifications a person reads on a phone.

Subscribed to a run's `EventHooks`, so every path that journals a rollback (a phase's
own, `migrate rollback`, `resume`, `watch`) notifies the same way. Each message's `text`
is one to three short lines: the phase and its hosts with what happened, then why (the
trigger's value against its limit, the failed step's task and error, the canary score
and its failing metrics), then what to do where a person must act. The event's payload
goes beside it, as `detail`; the text is composed from that payload, never from parsing
another message's prose, and never shows raw JSON.

The hook remembers the last failed step (and failed undo) of each run and host, so that
the rollback it causes can say which task failed and with what error, without the log
path that the journal's line carries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.core.events import NOTIFIABLE, EventKind, RunEvent

if TYPE_CHECKING:
    from orchestrator.notify.sender import Notifications

#: a line longer than this is cut (a phone shows about two screen widths of it)
LINE_MAX = 160
#: hosts named in a line before "and N more"
HOSTS_SHOWN = 3
#: payload keys too bulky for a webhook (the report draws them)
_BULKY = frozenset({"distributions"})

Failure = dict[str, str]


def _cut(line: str) -> str:
    line = " ".join(line.split())  # one line, whatever the detail held
    return line if len(line) <= LINE_MAX else line[:LINE_MAX - 1] + "…"


def hosts_text(hosts: list[str]) -> str:
    """`main`, `a, b, c`, `a, b, c and 7 more`."""
    if not hosts:
        return "all hosts"
    shown = ", ".join(hosts[:HOSTS_SHOWN])
    more = len(hosts) - HOSTS_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def failure_text(failure: Failure) -> str:
    """`step boom: task "restart agent" failed: connection refused`: the runner's own
    failure line without the log's path (the path is in `detail`)."""
    line = failure["line"]
    log = failure.get("log")
    if log and line.endswith(")") and " (log: " in line:
        line = line[:line.rindex(" (log: ")]
    return f"step {failure['step']}: {line}"


class NotificationHook:
    def __init__(self, notifications: Notifications,
                 phase_names: Mapping[int, str] | None = None) -> None:
        self.notifications = notifications
        self.phase_names = dict(phase_names or {})
        self._lock = threading.Lock()
        #: (run id, host) -> the step that failed last, and the undos that failed
        self._failed: dict[tuple[str | None, str | None], Failure] = {}
        self._undo_failed: dict[tuple[str | None, str | None], list[Failure]] = {}

    def __call__(self, event: RunEvent) -> None:
        self._remember(event)
        kind = event.kind.value
        if event.kind not in _COMPOSE or not self.notifications.wants(kind):
            return
        lines = [_cut(line) for line in _COMPOSE[event.kind](self, event) if line][:3]
        detail = {k: v for k, v in event.payload.items() if k not in _BULKY}
        if event.detail:
            detail["summary"] = event.detail
        self.notifications.send(kind, "\n".join(lines), run_id=event.run_id, host=event.host,
                                phase=event.phase, step=event.step, detail=detail)

    # --- what the hook keeps between events --------------------------------------------------
    def _remember(self, event: RunEvent) -> None:
        key = (event.run_id, event.host)
        if event.kind in (EventKind.STEP_FAILED, EventKind.STEP_ROLLBACK_FAILED):
            p = event.payload
            failure = {"step": event.step or "?", "line": event.detail or "failed",
                       "log": str(p.get("log") or "")}
            with self._lock:
                if event.kind is EventKind.STEP_FAILED:
                    self._failed[key] = failure
                else:
                    self._undo_failed.setdefault(key, []).append(failure)
        elif event.kind in (EventKind.RUN_STARTED, EventKind.RUN_RESUMED):
            with self._lock:
                self._failed.pop(key, None)
                self._undo_failed.pop(key, None)

    def _failure(self, event: RunEvent) -> Failure | None:
        with self._lock:
            return self._failed.get((event.run_id, event.host))

    # --- the parts of a line -----------------------------------------------------------------
    def _phase(self, event: RunEvent) -> str:
        if event.phase is None:
            return "migrate"
        name = self.phase_names.get(event.phase)
        return f"phase {event.phase}" + (f" ({name})" if name else "")

    def _where(self, event: RunEvent) -> str:
        """`phase 2 (BaseAgent integration) on main`."""
        hosts = event.payload.get("hosts")
        names = [event.host] if event.host else [str(h) for h in hosts] \
            if isinstance(hosts, list) else []
        return f"{self._phase(event)} on {hosts_text(names)}"

    def _why(self, event: RunEvent) -> str:
        """Why a phase is rolled back: the failed step's task and error, else the reason."""
        failure = self._failure(event) if event.payload.get("origin") == "step_failure" \
            else None
        if failure is not None:
            return failure_text(failure)
        return str(event.payload.get("reason") or event.detail or "")

    # --- one composer per event kind ---------------------------------------------------------
    def run_started(self, e: RunEvent) -> list[str]:
        return [f"{self._where(e)}: started", f"run {e.run_id}"]

    def phase_completed(self, e: RunEvent) -> list[str]:
        return [f"{self._where(e)}: completed", e.detail or ""]

    def trigger_fired(self, e: RunEvent) -> list[str]:
        p = e.payload
        action = p.get("action", "rollback")
        head = f"{self._where(e)}: trigger {p.get('trigger', '?')} fired, {action}"
        return [head, e.detail or self._value_line(p)]

    @staticmethod
    def _value_line(p: Mapping[str, Any]) -> str:
        if p.get("value") is None:
            return ""
        line = f"{p.get('metric') or 'value'} {_number(p['value'])}"
        if p.get("threshold") is not None:
            line += f", limit {_number(p['threshold'])}"
        if p.get("baseline") is not None:
            line += f" (baseline {_number(p['baseline'])})"
        return line

    def rollback_started(self, e: RunEvent) -> list[str]:
        return [f"{self._where(e)}: rolling back", self._why(e)]

    def rollback_completed(self, e: RunEvent) -> list[str]:
        return [f"{self._where(e)}: rolled back", self._why(e)]

    def rollback_failed(self, e: RunEvent) -> list[str]:
        with self._lock:
            undos = list(self._undo_failed.get((e.run_id, e.host), []))
        failed = "; ".join(failure_text(f) for f in undos) or e.detail or ""
        host = e.host or "HOST"
        return [f"ROLLBACK FAILED: {self._where(e)}, a human is needed",
                f"undo failed: {failed}" if undos else failed,
                f"then: migrate rollback --host {host} --phase {e.phase}"]

    def run_interrupted(self, e: RunEvent) -> list[str]:
        host = e.host or "HOST"
        return [f"{self._where(e)}: run interrupted, left for a person to finish",
                e.detail or "",
                f"finish: migrate rollback --host {host} --phase {e.phase} "
                f"(or migrate resume --host {host})"]

    def phase_refused(self, e: RunEvent) -> list[str]:
        """A phase, a resume or a rollback that may not start (exit 4): what was refused,
        then up to two of its reasons."""
        reasons = [r for r in str(e.payload.get("reason") or e.detail or "").splitlines() if r]
        more = f" (and {len(reasons) - 2} more)" if len(reasons) > 2 else ""
        what = {"rollback": "rollback refused, nothing was undone",
                "resume": "resume refused, nothing was run"}.get(
                    str(e.payload.get("command")), "refused, nothing was run")
        return [f"{self._where(e)}: {what}", *reasons[:1],
                (reasons[1] + more) if len(reasons) > 1 else ""]

    def metric_nodata(self, e: RunEvent) -> list[str]:
        return [f"{self._where(e)}: no data from {e.payload.get('metric') or 'a metric'}",
                e.detail or ""]

    def budget_exhausted(self, e: RunEvent) -> list[str]:
        p = e.payload
        failed = [str(h) for h in p.get("failed", [])]
        return [f"{self._phase(e)}: failure budget exhausted, the run stops",
                f"{len(failed)} host(s) failed ({hosts_text(failed)}), "
                f"{p.get('allowed', 0)} allowed"]

    def wave_started(self, e: RunEvent) -> list[str]:
        p = e.payload
        return [f"{self._where(e)}: wave {p.get('wave')} of {p.get('waves')} started"]

    def wave_completed(self, e: RunEvent) -> list[str]:
        p = e.payload
        return [f"{self._where(e)}: wave {p.get('wave')} of {p.get('waves')} completed"]

    def analysis_completed(self, e: RunEvent) -> list[str]:
        p = e.payload
        canary = [str(h) for h in p.get("canary_hosts", [])]
        wave = f" wave {p['wave']}" if p.get("wave") is not None else ""
        head = (f"{self._phase(e)}{wave} on {hosts_text(canary)}: canary analysis "
                f"{str(p.get('result', '?')).upper()}, score {_number(p.get('score'))}")
        metrics = [m for m in p.get("metrics", []) if isinstance(m, dict)]
        failing = p.get("failing")
        if not isinstance(failing, list):  # older payloads: every metric not passing
            failing = [m.get("name") for m in metrics if m.get("class") != "pass"
                       and not m.get("dry_run")]
        by_name = {m.get("name"): m for m in metrics}
        parts = [_metric_text(by_name.get(name, {"name": name})) for name in failing]
        why = f"failing: {', '.join(parts)}" if parts else "no metric failed"
        return [head, why]

    def journal_unavailable(self, e: RunEvent) -> list[str]:
        """A run stopped because its journal could not be written (exit 3)."""
        host = e.host or "HOST"
        return [f"{self._where(e)}: journal unreachable, the run stopped unrecorded",
                str(e.payload.get("reason") or e.detail or ""),
                f"once it is back: migrate resume --host {host} (or migrate rollback)"]


def _metric_text(m: Mapping[str, Any]) -> str:
    """`latency_ms high (x1.35, p=0.0004)`, `errors nodata`."""
    cls = m.get("class", "?")
    facts = []
    if m.get("effect") is not None:
        facts.append(f"x{float(m['effect']):.3g}")
    if m.get("p_value") is not None:
        facts.append(f"p={float(m['p_value']):.2g}")
    return f"{m.get('name')} {cls}" + (f" ({', '.join(facts)})" if facts else "")


Compose = Callable[[NotificationHook, RunEvent], list[str]]

_COMPOSE: dict[EventKind, Compose] = {kind: getattr(NotificationHook, kind.value)
                                      for kind in NOTIFIABLE}
