"""Observation windows: `migrate watch --for 24h --checkpoint 6h`.

The seed's operators gated each next agent on the previous one being "stable and
verified" after 24 hours, with checkpoints every 6 hours. A watch with
`--checkpoint` writes a report at each checkpoint and at the end, in md and html:
per trigger, how often it fired, how long it had no data, how many notifications
it caused, and one chart per trigger and host over the window so far. The watch
journals `watch_started` (with the window) and `observation_checkpoint` events, so
`status` can say how far an observation has come and `requires: observed` can tell
whether anything fired since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.core.durations import format_duration
from orchestrator.core.timestamps import parse_time
from orchestrator.state.journal import Journal

NOTIFYING = ("trigger_fired", "rollback_started", "rollback_completed", "rollback_failed",
             "metric_nodata")


@dataclass
class TriggerTally:
    trigger: str
    host: str
    metric: str
    samples: int = 0
    fires: int = 0
    nodata_samples: int = 0
    nodata_seconds: float = 0.0
    notifications: int = 0
    chart: str | None = None


@dataclass
class ObservationReport:
    run_id: str
    checkpoint: int
    final: bool
    elapsed: float
    window: float | None
    tallies: list[TriggerTally] = field(default_factory=list)


def tally(journal: Journal, run_id: str, poll_interval: float,
          notify_events: set[str]) -> list[TriggerTally]:
    """Count fires, no-data time and notifications per trigger and host in a watch run."""
    out: dict[tuple[str, str], TriggerTally] = {}
    for s in journal.samples(run_id):
        key = (s["trigger"], s["host"])
        t = out.setdefault(key, TriggerTally(s["trigger"], s["host"], s["metric"]))
        t.samples += 1
        if s["value"] is None:
            t.nodata_samples += 1
            t.nodata_seconds += poll_interval
    for e in journal.events(run_id=run_id):
        payload = e.payload or {}
        trigger = payload.get("trigger")
        if e.host is None:
            continue
        if trigger is None and e.kind == "metric_nodata":
            metric = payload.get("metric")
            trigger = next((t.trigger for t in out.values()
                            if t.host == e.host and t.metric == metric), None)
        if trigger is None:
            continue
        t = out.setdefault((trigger, e.host), TriggerTally(trigger, e.host,
                                                           str(payload.get("metric", ""))))
        if e.kind == "trigger_fired":
            t.fires += 1
        if e.kind in notify_events:
            t.notifications += 1
    return sorted(out.values(), key=lambda t: (t.trigger, t.host))


def write_checkpoint(journal: Journal, run_id: str, out_dir: Path, checkpoint: int,
                     final: bool, elapsed: float, window: float | None, poll_interval: float,
                     notify_events: set[str]) -> list[Path]:
    """Write checkpoint-N.md and .html (a chart per trigger and host, in the same look as
    run reports: `reporting.page`); return their paths, md first."""
    from orchestrator.reporting.page import Chart, Page, Table, trigger_chart, write_page

    report = ObservationReport(run_id, checkpoint, final, elapsed, window,
                               tally(journal, run_id, poll_interval, notify_events))
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in journal.samples(run_id):
        series.setdefault((s["trigger"], s["host"]), []).append(s)
    charts = []
    for t in report.tallies:
        rows = series.get((t.trigger, t.host))
        if not rows:
            continue
        t.chart = f"checkpoint-{checkpoint}-{t.trigger}-{t.host}.png"
        threshold = next((r["threshold"] for r in reversed(rows) if r["threshold"] is not None),
                         None)
        baseline = next((r["baseline"] for r in reversed(rows) if r["baseline"] is not None),
                        None)
        fired = [r["t"] for i, r in enumerate(rows) if r["state"] == "firing"
                 and (i == 0 or rows[i - 1]["state"] != "firing")]
        png = trigger_chart(f"{t.trigger} on {t.host}", [(r["t"], r["value"]) for r in rows],
                            ylabel=t.metric or t.trigger, threshold=threshold,
                            baseline=baseline, fired_at=fired,
                            xlabel="seconds since the watch began")
        charts.append(Chart(f"{t.trigger} on {t.host}", png, t.chart,
                            f"{t.fires} fire(s)", "bad" if t.fires else "ok"))
    fires = sum(t.fires for t in report.tallies)
    page = Page(
        title=_title(report),
        outcome=("nothing fired" if not fires else f"{fires} fire(s)"),
        verdict="ok" if not fires else "bad",
        summary=[("watch run", run_id), ("elapsed", format_duration(elapsed)),
                 ("window", format_duration(window) if window else "open-ended"),
                 ("written", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))],
        charts=charts,
        tables=[Table("Per trigger", ("trigger", "host", "samples", "fires", "no data",
                                      "notifications"),
                      [(t.trigger, t.host, t.samples, t.fires,
                        f"{format_duration(t.nodata_seconds)} ({t.nodata_samples} samples)",
                        t.notifications) for t in report.tallies])])
    written = write_page(page, out_dir, f"checkpoint-{checkpoint}")
    return [written["md"], written["html"]]


def _title(r: ObservationReport) -> str:
    which = "final report" if r.final else f"checkpoint {r.checkpoint}"
    window = f" of {format_duration(r.window)}" if r.window else ""
    return f"Observation {r.run_id}: {which} after {format_duration(r.elapsed)}{window}"


def observation_progress(journal: Journal, host: str) -> dict[str, Any] | None:
    """How far the newest unfinished watch of `host` has come, for `status`."""
    started = [e for e in journal.events(host=host) if e.kind == "watch_started"]
    for e in reversed(started):
        info = journal.run_info(e.run_id or "")
        if info is None or info.get("ended_at"):
            continue
        since = parse_time(e.at)
        elapsed = (datetime.now(UTC) - since).total_seconds()
        window = (e.payload or {}).get("for_s")
        return {"run_id": e.run_id, "elapsed_s": round(elapsed, 1), "window_s": window,
                "checkpoints": sum(1 for x in journal.events(run_id=e.run_id)
                                   if x.kind == "observation_checkpoint")}
    return None
