"""Run reports: the timeline of a run and, per trigger, a chart a person can read alone.

Each chart shows the metric's samples over time since the phase started, the
limit it was compared with, its baseline, and a vertical line where the trigger
fired, so "why did it roll back?" is answered by the picture. Charts are PNG
files (matplotlib, Agg backend, imported only when drawing) next to the report;
`report --format html` is one self-contained file with the charts inlined. The
page itself is `reporting.page`'s, shared with the observation reports, so every
report migrate writes reads the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator._exceptions import ConfigError
from orchestrator.state.journal import Journal

if TYPE_CHECKING:
    from orchestrator.reporting.page import Page


def find_run(state_dirs: list[Path], run_id: str) -> tuple[Journal, Path]:
    """The journal holding `run_id`: the project's own first, then rehearsals'."""
    for state_dir in state_dirs:
        db = state_dir / "state.db"
        if not db.exists():
            continue
        journal = Journal(db)
        if journal.run_info(run_id) is not None:
            return journal, state_dir
        journal.close()
    raise ConfigError(f"no run {run_id!r} in the journal (see `migrate history`)")


#: more (trigger, host) pairs than this and only the ones that fired or went pending, then
#: the first others, get a chart: 200 hosts x 3 triggers would be 600 charts nobody reads
MAX_CHARTS = 24


def build_report(journal: Journal, run_id: str, out_dir: Path) -> dict[str, Any]:
    """The run's document (`--format json`), with its charts written to `out_dir`."""
    from orchestrator.reporting.page import trigger_chart

    info = journal.run_info(run_id)
    if info is None:
        raise ConfigError(f"no run {run_id!r} in the journal")
    events = [e.as_json() for e in journal.events(run_id=run_id)]
    samples = journal.samples(run_id)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in samples:
        series.setdefault((s["trigger"], s["host"]), []).append(s)
    fired: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        payload = e.get("payload") or {}
        if e["kind"] == "trigger_fired" and payload.get("trigger"):
            fired.setdefault((payload["trigger"], e["host"]),
                             dict(payload, reason=e["detail"], at=e["at"]))

    def interest(key: tuple[str, str]) -> tuple[int, str, str]:
        rows = series[key]
        if key in fired or any(r["state"] == "firing" for r in rows):
            return (0, *key)
        if any(r["state"] == "pending" for r in rows):
            return (1, *key)
        return (2, *key)

    charted = set(sorted(series, key=interest)[:MAX_CHARTS])
    triggers = []
    for (trigger, host), rows in sorted(series.items()):
        fire_t = next((r["t"] for r in rows if r["state"] == "firing"), None)
        last_threshold = next((r["threshold"] for r in reversed(rows)
                               if r["threshold"] is not None), None)
        last_baseline = next((r["baseline"] for r in reversed(rows)
                              if r["baseline"] is not None), None)
        chart: Path | None = None
        if (trigger, host) in charted:
            chart = out_dir / f"{trigger}-{host}.png"
            chart.write_bytes(trigger_chart(
                f"{trigger} on {host}", [(r["t"], r["value"]) for r in rows],
                ylabel=rows[0]["metric"], threshold=last_threshold, baseline=last_baseline,
                fired_at=[fire_t] if fire_t is not None else []))
        triggers.append({"trigger": trigger, "host": host, "metric": rows[0]["metric"],
                         "samples": len(rows), "fired": (trigger, host) in fired,
                         "fired_at_s": fire_t, "threshold": last_threshold,
                         "baseline": last_baseline,
                         "reason": fired.get((trigger, host), {}).get("reason"),
                         "chart": str(chart) if chart else None})
    reason = next((e["detail"] for e in events if e["kind"] == "rollback_started"), None)
    return {"run": info, "outcome": info.get("outcome"), "reason": reason,
            "timeline": events, "triggers": triggers}


def _verdict(outcome: str | None) -> str:
    if outcome in ("completed", "dry_run_passed", "watched"):
        return "ok"
    if outcome in ("rolled_back", "rollback_failed", "dry_run_failed"):
        return "bad"
    if outcome == "interrupted":
        return "warn"
    return "info"


def run_page(doc: dict[str, Any]) -> Page:
    """The run's document as a report page (the same look as observation reports)."""
    from orchestrator.reporting.page import Chart, Page, Table

    run = doc["run"]
    hosts = run["hosts"]
    on = ", ".join(hosts) if len(hosts) <= 6 else f"{len(hosts)} hosts"
    what = f"phase {run['phase']}" if run.get("phase") is not None else str(run.get("kind") or
                                                                          "run")
    outcome = str(doc["outcome"] or "not ended (running, or the process died)")
    if doc["reason"]:
        outcome += f": {doc['reason']}"
    fired = [t for t in doc["triggers"] if t["fired"]]
    summary = [("run", str(run["id"])), ("command", str(run["command"])),
               ("hosts", ", ".join(hosts)),
               ("ran on", f"{run.get('machine') or '?'} (pid {run.get('pid') or '?'})"),
               ("started", str(run["started_at"])),
               ("ended", str(run["ended_at"] or "")),
               ("triggers watched", str(len({t["trigger"] for t in doc["triggers"]}))),
               ("fired", ", ".join(f"{t['trigger']} on {t['host']}" for t in fired) or "none")]
    charts = []
    for t in doc["triggers"]:
        if not t["chart"]:
            continue
        state = (f"FIRED at {t['fired_at_s']:.1f}s: {t['reason']}" if t["fired"]
                 else "did not fire")
        charts.append(Chart(f"{t['trigger']} on {t['host']}", Path(t["chart"]).read_bytes(),
                            Path(t["chart"]).name, state, "bad" if t["fired"] else "info"))
    notes = []
    if not doc["triggers"]:
        notes.append("No trigger was watched in this run.")
    elif len(charts) < len(doc["triggers"]):
        notes.append(f"Charts for {len(charts)} of {len(doc['triggers'])} trigger/host pairs: "
                     "those that fired or went pending first; every pair is in the table.")
    trig_rows = [(t["trigger"], t["host"], t["metric"], t["samples"], t["threshold"],
                  t["baseline"], f"fired at {t['fired_at_s']:.1f}s" if t["fired"] else "ok")
                 for t in doc["triggers"]]
    timeline = [(e["at"], e["host"] or "", e["step"] or "", e["kind"],
                 (e["detail"] or "").replace("\n", " ")[:300]) for e in doc["timeline"]]
    tables = [Table("Triggers", ("trigger", "host", "metric", "samples", "limit", "baseline",
                                 "result"), trig_rows)] if trig_rows else []
    tables.append(Table("Timeline", ("at", "host", "step", "event", "detail"), timeline))
    return Page(f"Run {run['id']}: {what} on {on}", outcome, _verdict(doc["outcome"]),
                summary, charts, tables, tuple(notes))


def render_markdown(doc: dict[str, Any]) -> str:
    from orchestrator.reporting.page import render_markdown as page_markdown

    return page_markdown(run_page(doc))


def render_html(doc: dict[str, Any]) -> str:
    from orchestrator.reporting.page import render_html as page_html

    return page_html(run_page(doc))


def write_report(journal: Journal, run_id: str, out_dir: Path, fmt: str) -> tuple[Path, str]:
    doc = build_report(journal, run_id, out_dir)
    text = {"md": render_markdown, "html": render_html,
            "json": lambda d: json.dumps(d, indent=2, default=str)}[fmt](doc)
    path = out_dir / f"report.{fmt}"
    path.write_text(text, encoding="utf-8")
    return path, text
