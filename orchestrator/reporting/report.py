"""Run reports: the timeline of a run and, per trigger, a chart a person can read alone.

Each chart shows the metric's samples on the run's UTC clock (the timeline's), the
limit it was compared with, its baseline, and vertical lines where the trigger fired
and where the rollback began and ended, with the re-check after it, so "why did it
roll back, and did that help?" is answered by the picture. The chart of the trigger
that fired comes first. Charts are PNG files (matplotlib, Agg backend, imported only
when drawing) in `runs/RUN_ID/report/`; `report --format html` is one self-contained
file (`runs/RUN_ID/report.html` unless `--out` says otherwise) with the charts inlined. The
page itself is `reporting.page`'s, shared with the observation reports, so every
report migrate writes reads the same way.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator._exceptions import ConfigError
from orchestrator.core.timestamps import parse_time_or_none as parse_stamp
from orchestrator.reporting import ALERT, ALERT_METRIC, PASSFAIL, show_value
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
        try:
            found = journal.run_info(run_id) is not None
        except BaseException:  # an unreadable journal is not kept open either
            journal.close()
            raise
        if found:
            return journal, state_dir  # the caller closes it
        journal.close()
    raise ConfigError(f"no run {run_id!r} in the journal (see `migrate history`)")


#: more (trigger, host) pairs than this and only the ones that fired or went pending, then
#: the first others, get a chart: 200 hosts x 3 triggers would be 600 charts nobody reads
MAX_CHARTS = 24

def clock(text: str | None) -> str:
    """HH:MM:SS of a journal time: what the charts' UTC axis and the timeline show."""
    moment = parse_stamp(text)
    return moment.strftime("%H:%M:%S") if moment else str(text or "")


def _passfail(rows: list[dict[str, Any]]) -> bool:
    """A pass/fail metric's samples: no limit, values 1 (pass) and 0 (fail) only."""
    values = {r["value"] for r in rows if r["value"] is not None}
    return all(r["threshold"] is None for r in rows) and bool(values) and values <= {0, 1}


def _first(events: list[dict[str, Any]], kinds: tuple[str, ...],
           host: str | None = None) -> dict[str, Any] | None:
    return next((e for e in events if e["kind"] in kinds and (host is None or e["host"] == host)),
                None)


def _last(events: list[dict[str, Any]], kinds: tuple[str, ...],
          host: str | None = None) -> dict[str, Any] | None:
    return next((e for e in reversed(events)
                 if e["kind"] in kinds and (host is None or e["host"] == host)), None)


def build_report(journal: Journal, run_id: str, out_dir: Path) -> dict[str, Any]:
    """The run's document (`--format json`), with its charts written to `out_dir`.

    Triggers come worst first: those that fired (in the order they fired), then those
    that went firing or pending, then the others by name. Every chart is on one UTC
    time axis, the timeline's, and reaches past the rollback to its re-check, with the
    fire and the rollback's start and end marked.
    """
    from orchestrator.reporting.page import Dot, Mark, trigger_chart

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
    fire_order = {key: i for i, key in enumerate(fired)}

    def interest(key: tuple[str, str]) -> tuple[int, int, str, str]:
        rows = series.get(key, [])
        if key in fired:
            return (0, fire_order[key], *key)
        if any(r["state"] == "firing" for r in rows):
            return (1, 0, *key)
        if any(r["state"] == "pending" for r in rows):
            return (2, 0, *key)
        return (3, 0, *key)

    # the rollback: when it began and ended (on each host, and for the run)
    rollback_kinds = ("rollback_started",)
    rolled_kinds = ("rollback_completed", "rollback_failed")
    recheck_kinds = ("rollback_verified", "rollback_verify_failed")
    started = _first(events, rollback_kinds)
    ended = _last(events, rolled_kinds)
    rollback = None
    if started is not None:
        rollback = {"started_at": started["at"], "ended_at": ended["at"] if ended else None,
                    "reason": started["detail"],
                    # what asked for it: a trigger's name, `analysis` for the canary judge
                    "trigger": (started.get("payload") or {}).get("trigger"),
                    "hosts": sorted({e["host"] for e in events
                                     if e["kind"] in rollback_kinds and e["host"]}),
                    # where something was undone (a host that ran no step has nothing to undo)
                    "undone_on": sorted({e["host"] for e in events
                                         if e["kind"] == "step_rollback_started" and e["host"]})}
    first_fire = min(fired.items(), key=lambda kv: kv[1]["at"]) if fired else None

    order = sorted(series, key=interest)
    charted = set(order[:MAX_CHARTS])
    triggers = []
    for trigger, host in order:
        rows = series[(trigger, host)]
        fire = fired.get((trigger, host))
        fire_t = next((r["t"] for r in rows if r["state"] == "firing"), None)
        last_threshold = next((r["threshold"] for r in reversed(rows)
                               if r["threshold"] is not None), None)
        last_baseline = next((r["baseline"] for r in reversed(rows)
                              if r["baseline"] is not None), None)
        alert = str(rows[0]["metric"] or "").startswith(ALERT_METRIC)  # 1 = firing
        passfail = alert or _passfail(rows)
        rechecks = [e for e in events if e["kind"] in recheck_kinds and e["host"] == host
                    and (e.get("payload") or {}).get("metric") == rows[0]["metric"]]
        chart: Path | None = None
        if (trigger, host) in charted:
            chart = out_dir / f"{trigger}-{host}.png"
            marks: list[Mark] = []
            fire_at = parse_stamp(fire["at"]) if fire else None
            if fire_at is not None:
                marks.append(Mark(fire_at, f"fired {fire_at:%H:%M:%S}", "red", "-", 2.0))
            elif first_fire is not None:
                (ftrig, fhost), f = first_fire
                at = parse_stamp(f["at"])
                if at is not None:
                    marks.append(Mark(at, f"{ftrig} fired on {fhost} {at:%H:%M:%S}", "red",
                                      ":", 1.5))
            mine_start = _first(events, rollback_kinds, host) or started
            mine_end = _last(events, rolled_kinds, host) or ended
            start_at = parse_stamp(mine_start["at"]) if mine_start else None
            end_at = parse_stamp(mine_end["at"]) if mine_end else None
            if start_at is not None:
                marks.append(Mark(start_at, f"rollback started {start_at:%H:%M:%S}", "darkorange",
                                  "--"))
            if end_at is not None:
                word = "failed" if mine_end and mine_end["kind"] == "rollback_failed" else "ended"
                marks.append(Mark(end_at, f"rollback {word} {end_at:%H:%M:%S}", "purple", "--"))
            dots = []
            for e in rechecks:
                at = parse_stamp(e["at"])
                ok = bool((e.get("payload") or {}).get("passes"))
                if at is not None:
                    dots.append(Dot(at, 1.0 if ok else 0.0, f"re-check: {'pass' if ok else 'fail'}",
                                    "green" if ok else "red"))
            points = [(parse_stamp(r["at"]) or datetime.fromtimestamp(0, UTC), r["value"])
                      for r in rows]
            day = points[0][0].strftime("%Y-%m-%d") if points else ""
            # the axis runs to the whole rollback's end, not only this host's part of it
            # (the hosts' ends are written one after another: only the last is its end)
            rollback_end = parse_stamp(ended["at"]) if ended else None
            until = max([m.x for m in marks if isinstance(m.x, datetime)] +
                        [d.x for d in dots if isinstance(d.x, datetime)] +
                        [p[0] for p in points[-1:]] +
                        ([rollback_end] if rollback_end is not None else []), default=None)
            chart.write_bytes(trigger_chart(
                f"{trigger} on {host}", points, ylabel=rows[0]["metric"],
                threshold=last_threshold, baseline=last_baseline, marks=marks,
                dots=dots if passfail else [], passfail=passfail, until=until,
                xlabel=f"time (UTC) on {day}",
                levels=("not firing", "firing") if alert else ("fail", "pass")))
        triggers.append({"trigger": trigger, "host": host, "metric": rows[0]["metric"],
                         "kind": ALERT if alert else PASSFAIL if passfail else "number",
                         "samples": len(rows), "fired": fire is not None,
                         "fired_at": fire["at"] if fire else None,
                         "fired_at_s": fire_t, "threshold": last_threshold,
                         "baseline": last_baseline,
                         "last_value": rows[-1]["value"], "last_at": rows[-1]["at"],
                         "reason": fire["reason"] if fire else None,
                         "rechecks": [{"at": e["at"], "passes": bool((e.get("payload") or {})
                                                                      .get("passes")),
                                       "detail": e["detail"]} for e in rechecks],
                         "chart": str(chart) if chart else None})
    reason = started["detail"] if started else None
    return {"run": info, "outcome": info.get("outcome"), "reason": reason,
            "rollback": rollback, "timeline": events, "triggers": triggers,
            "analyses": _analyses(events, out_dir)}


def _analyses(events: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    """Each `analysis_completed` of the run (SPEC section 2) with its box-plot chart."""
    from orchestrator.reporting.page import analysis_chart

    out = []
    for e in events:
        p = e.get("payload") or {}
        if e["kind"] != "analysis_completed" or "score" not in p:
            continue
        wave = p.get("wave")
        chart = out_dir / f"analysis-{'wave-' + str(wave) if wave is not None else 'phase'}.png"
        where = f"wave {wave}" if wave is not None else f"phase {e['phase']}"
        chart.write_bytes(analysis_chart(
            f"canary vs control, {where}: score {p['score']:g} ({p.get('result')})",
            p.get("distributions") or {}, {m["name"]: _class(m) for m in p.get("metrics", [])}))
        out.append({"at": e["at"], "phase": e["phase"], "wave": wave, "score": p["score"],
                    "result": p.get("result"), "metrics": p.get("metrics", []),
                    "canary_hosts": p.get("canary_hosts", []), "chart": str(chart)})
    return out


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
               ("fired", ", ".join(f"{t['trigger']} on {t['host']} at {t['fired_at']}"
                                   for t in fired) or "none")]
    rb = doc.get("rollback")
    if rb:
        undone = rb.get("undone_on", rb["hosts"])
        idle = [h for h in rb["hosts"] if h not in undone]
        summary.append(("rolled back", f"{', '.join(undone) or 'nothing to undo'}: "
                                       f"{rb['started_at']} to {rb['ended_at'] or '(not ended)'}"
                        + (f" (nothing had run on {', '.join(idle)})" if idle else "")))
    for e in doc["timeline"]:
        if e["kind"] == "rollback_failed":
            what = str(e["detail"] or "").removeprefix("a human is needed: ")
            summary.append(("A HUMAN IS NEEDED", what if what.startswith(f"{e['host']}:")
                            else f"{e['host']}: {what}"))
    charts = []
    for t in doc["triggers"]:
        if not t["chart"]:
            continue
        state = (f"FIRED at {t['fired_at']}: {t['reason']}" if t["fired"]
                 else f"did not fire; last {show_value(t['last_value'], t['kind'])} "
                      f"at {t['last_at']}")
        if t["rechecks"]:
            state += "; after the rollback: " + ", ".join(
                "pass" if r["passes"] else f"FAIL ({r['detail']})" for r in t["rechecks"])
        charts.append(Chart(f"{t['trigger']} on {t['host']}", Path(t["chart"]).read_bytes(),
                            Path(t["chart"]).name, state, "bad" if t["fired"] else "info"))
    notes = []
    if not doc["triggers"]:
        notes.append("No trigger was watched in this run.")
    else:
        notes.append("Times are UTC, on the charts as in the timeline. Charts show the trigger "
                     "that fired first, then the others; each marks the fire and the rollback's "
                     "start and end.")
        if len(charts) < len(doc["triggers"]):
            notes.append(f"Charts for {len(charts)} of {len(doc['triggers'])} trigger/host "
                         "pairs: those that fired or went pending first; every pair is in the "
                         "table.")
    trig_rows = [(t["trigger"], t["host"], t["metric"], t["samples"],
                  "failing" if t["kind"] == PASSFAIL else "firing" if t["kind"] == ALERT
                  else t["threshold"],
                  "" if t["kind"] in (PASSFAIL, ALERT) else t["baseline"],
                  show_value(t["last_value"], t["kind"]),
                  f"FIRED at {t['fired_at']}" if t["fired"] else "ok")
                 for t in doc["triggers"]]
    timeline = [(e["at"], e["host"] or "", e["step"] or "", e["kind"],
                 (e["detail"] or "").replace("\n", " ")[:600]) for e in doc["timeline"]]
    tables = [Table("Triggers", ("trigger", "host", "metric", "samples", "limit", "baseline",
                                 "last value", "result"), trig_rows)] if trig_rows else []
    # a run the canary judgement rolled back opens with that judgement: its table and box
    # plots come before any chart of a trigger (none of them fired, or it was not first)
    by_analysis = rb is not None and rb.get("trigger") == "analysis"
    lead_charts: list[Chart] = []
    lead_tables: list[Table] = []
    for a in doc.get("analyses", []):
        where = f"wave {a['wave']}" if a["wave"] is not None else f"phase {a['phase']}"
        verdict = {"pass": "ok", "marginal": "warn"}.get(str(a["result"]), "bad")
        leads = by_analysis and a["result"] != "pass"
        (lead_charts if leads else charts).append(Chart(
            f"Canary analysis, {where}", Path(a["chart"]).read_bytes(),
            Path(a["chart"]).name, f"score {a['score']:g}: {str(a['result']).upper()} "
            f"(canary: {', '.join(a['canary_hosts']) or '?'})", verdict))
        (lead_tables if leads else tables).append(
                      Table(f"Canary analysis, {where}: score {a['score']:g} ({a['result']})",
                            ("metric", "class", "canary mean", "control mean", "effect",
                             "p value", "spread", "canary samples", "control samples"),
                            [(m["name"], _class(m), _g(m["canary_mean"]), _g(m["control_mean"]),
                              _g(m["effect"]), _g(m["p_value"]), _spread(m.get("spread")),
                              m["canary_samples"], m["control_samples"])
                             for m in a["metrics"]]))
    tables.append(Table("Timeline (UTC)", ("at", "host", "step", "event", "detail"), timeline))
    return Page(f"Run {run['id']}: {what} on {on}", outcome, _verdict(doc["outcome"]),
                summary, charts, tables, tuple(notes), lead_tables, lead_charts)


def _class(metric: dict[str, Any]) -> str:
    """A judged metric's class, marked when it is a dry run (judged, never counted)."""
    return str(metric["class"]) + (", dry run" if metric.get("dry_run") else "")


def _spread(spread: dict[str, Any] | None) -> str:
    """The spread check (`spread:` set): IQR ratio canary/control, Brown-Forsythe p, result."""
    if not spread:
        return ""
    ratio = "inf" if spread.get("ratio") is None and spread.get("result") != "nodata" \
        else _g(spread.get("ratio"))
    return f"IQR x{ratio}, p {_g(spread.get('p_value'))}: {spread.get('result')}" \
        if spread.get("result") != "nodata" else "nodata"


def _g(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def render_markdown(doc: dict[str, Any], charts_dir: str = "") -> str:
    from orchestrator.reporting.page import render_markdown as page_markdown

    return page_markdown(run_page(doc), charts_dir)


def render_html(doc: dict[str, Any]) -> str:
    from orchestrator.reporting.page import render_html as page_html

    return page_html(run_page(doc))


def write_report(journal: Journal, run_id: str, out_dir: Path, fmt: str,
                 out: Path | None = None) -> tuple[Path, str]:
    """Write the report in `fmt` to `out` (default: `report.FMT` beside `out_dir`, i.e.
    `.migrate/runs/RUN_ID/report.html`); the chart PNGs go to `out_dir`. Returns the
    path written and the text."""
    doc = build_report(journal, run_id, out_dir)
    path = out if out is not None else out_dir.parent / f"report.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "md":
        rel = os.path.relpath(out_dir.resolve(), path.parent.resolve())
        text = render_markdown(doc, "" if rel == "." else rel)
    elif fmt == "html":
        text = render_html(doc)
    else:
        text = json.dumps(doc, indent=2, default=str)
    path.write_text(text, encoding="utf-8")
    return path, text
