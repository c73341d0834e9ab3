"""Run reports: the timeline of a run and, per trigger, a chart a person can read alone.

Each chart shows the metric's samples over time since the phase started, the
limit it was compared with, its baseline, and a vertical line where the trigger
fired, so "why did it roll back?" is answered by the picture. Charts are PNG
files drawn with matplotlib (Agg backend, imported only here).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError
from orchestrator.state.journal import Journal


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


def build_report(journal: Journal, run_id: str, out_dir: Path) -> dict[str, Any]:
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
    triggers = []
    for (trigger, host), rows in sorted(series.items()):
        fire_t = next((r["t"] for r in rows if r["state"] == "firing"), None)
        chart = out_dir / f"{trigger}-{host}.png"
        _chart(trigger, host, rows, fire_t, chart)
        last_threshold = next((r["threshold"] for r in reversed(rows)
                               if r["threshold"] is not None), None)
        last_baseline = next((r["baseline"] for r in reversed(rows)
                              if r["baseline"] is not None), None)
        triggers.append({"trigger": trigger, "host": host, "metric": rows[0]["metric"],
                         "samples": len(rows), "fired": (trigger, host) in fired,
                         "fired_at_s": fire_t, "threshold": last_threshold,
                         "baseline": last_baseline,
                         "reason": fired.get((trigger, host), {}).get("reason"),
                         "chart": str(chart)})
    reason = next((e["detail"] for e in events if e["kind"] == "rollback_started"), None)
    return {"run": info, "outcome": info.get("outcome"), "reason": reason,
            "timeline": events, "triggers": triggers}


def _chart(trigger: str, host: str, rows: list[dict[str, Any]], fire_t: float | None,
           path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    # no data is a gap in the line (NaN), never a straight line drawn across it
    ax.plot([r["t"] for r in rows],
            [r["value"] if r["value"] is not None else float("nan") for r in rows],
            marker="o", markersize=3, linewidth=1.5, label=rows[0]["metric"])
    vs = [r["value"] for r in rows if r["value"] is not None]
    nodata = [r["t"] for r in rows if r["value"] is None]
    if nodata:
        ax.scatter(nodata, [min(vs) if vs else 0] * len(nodata), marker="x", color="grey",
                   label="no data")
    threshold = [r["threshold"] for r in rows if r["threshold"] is not None]
    if threshold:
        ax.axhline(threshold[-1], color="red", linestyle="--", label=f"limit {threshold[-1]:g}")
    baseline = [r["baseline"] for r in rows if r["baseline"] is not None]
    if baseline:
        ax.axhline(baseline[-1], color="green", linestyle=":",
                   label=f"baseline {baseline[-1]:g}")
    if fire_t is not None:
        ax.axvline(fire_t, color="black", linewidth=2, label=f"fired at {fire_t:.1f}s")
    ax.set_title(f"{trigger} on {host}")
    ax.set_xlabel("seconds since phase start")
    ax.set_ylabel(rows[0]["metric"])
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def render_markdown(doc: dict[str, Any]) -> str:
    run = doc["run"]
    lines = [f"# Run {run['id']}: phase {run['phase']} on {', '.join(run['hosts'])}", "",
             f"- command: `{run['command']}`", f"- started: {run['started_at']}",
             f"- ended: {run['ended_at']}", f"- outcome: **{doc['outcome']}**"]
    if doc["reason"]:
        lines.append(f"- why: {doc['reason']}")
    lines += ["", "## Triggers", ""]
    if not doc["triggers"]:
        lines.append("No trigger was watched in this run.")
    for t in doc["triggers"]:
        state = f"FIRED at {t['fired_at_s']:.1f}s: {t['reason']}" if t["fired"] else "did not fire"
        lines += [f"### {t['trigger']} on {t['host']} ({t['metric']})", "", state, "",
                  f"![{t['trigger']} on {t['host']}]({Path(t['chart']).name})", ""]
    lines += ["## Timeline", "", "| at | host | step | event | detail |", "|---|---|---|---|---|"]
    for e in doc["timeline"]:
        detail = (e["detail"] or "").replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(f"| {e['at']} | {e['host'] or ''} | {e['step'] or ''} | {e['kind']} | "
                     f"{detail} |")
    return "\n".join(lines) + "\n"


def render_html(doc: dict[str, Any]) -> str:
    esc = html.escape
    run = doc["run"]
    parts = [f"<html><head><meta charset='utf-8'><title>Run {esc(run['id'])}</title></head><body>",
             f"<h1>Run {esc(run['id'])}: phase {run['phase']} on {esc(', '.join(run['hosts']))}"
             "</h1>", f"<p>Outcome: <b>{esc(str(doc['outcome']))}</b></p>"]
    if doc["reason"]:
        parts.append(f"<p>Why: {esc(doc['reason'])}</p>")
    for t in doc["triggers"]:
        state = f"fired at {t['fired_at_s']:.1f}s: {t['reason']}" if t["fired"] else "did not fire"
        parts.append(f"<h2>{esc(t['trigger'])} on {esc(t['host'])}</h2><p>{esc(state)}</p>"
                     f"<img src='{esc(Path(t['chart']).name)}' alt='{esc(t['trigger'])}'>")
    parts.append("<h2>Timeline</h2><table border='1'><tr><th>at</th><th>host</th><th>step</th>"
                 "<th>event</th><th>detail</th></tr>")
    for e in doc["timeline"]:
        parts.append("<tr>" + "".join(f"<td>{esc(str(e[k] or ''))}</td>"
                                      for k in ("at", "host", "step", "kind", "detail")) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_report(journal: Journal, run_id: str, out_dir: Path, fmt: str) -> tuple[Path, str]:
    doc = build_report(journal, run_id, out_dir)
    text = {"md": render_markdown, "html": render_html,
            "json": lambda d: json.dumps(d, indent=2, default=str)}[fmt](doc)
    path = out_dir / f"report.{fmt}"
    path.write_text(text, encoding="utf-8")
    return path, text
