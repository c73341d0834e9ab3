"""Documents for plan, status and history, and their text rendering.

The JSON shapes are the spec's; the text views are the same data laid out for a
terminal. Nothing here reads files or changes state.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.model import Phase, Project, StepAction
from orchestrator.core.states import PhaseState
from orchestrator.state.journal import Journal


def plan_document(project: Project, phase: Phase, hosts: list[Host],
                  inventory: Inventory) -> dict[str, Any]:
    steps = []
    for step in phase.steps:
        applies = [h.name for h in hosts] if step.hosts is None else [
            h.name for h in inventory.resolve(list(step.hosts)) if h in hosts]
        entry: dict[str, Any] = {"id": step.id, "name": step.name, "action": step.action.value,
                                 "runs": step.target, "hosts": applies,
                                 "rollback": step.undo.describe() if step.undo else None}
        if step.timeout is not None:
            entry["timeout_s"] = step.timeout
        if step.retries:
            entry["retries"] = step.retries
        if step.action is StepAction.WAIT:
            entry["wait_s"] = step.wait_seconds
        steps.append(entry)
    triggers = []
    for name in phase.triggers:
        t = project.triggers[name]
        triggers.append({"name": name, "metric": t.metric, "condition": t.condition.value,
                         "threshold": t.threshold, "direction": t.direction,
                         "for_s": t.for_seconds, "action": t.action.value,
                         "baseline": t.baseline, "describe": t.describe()})
    return {"phase": phase.number, "name": phase.name, "file": str(phase.path.name),
            "hosts": [h.name for h in hosts], "requires": list(phase.requires),
            "bake_s": phase.bake, "serial": phase.serial,
            "preconditions": list(phase.preconditions), "steps": steps, "triggers": triggers}


def plan_text(doc: dict[str, Any]) -> str:
    lines = [f"phase {doc['phase']}: {doc['name']}  ({doc['file']})",
             f"hosts: {', '.join(doc['hosts'])}"
             + (f"   requires: {', '.join(map(str, doc['requires']))}" if doc["requires"] else "")
             + (f"   bake: {doc['bake_s']:g}s" if doc["bake_s"] else "")
             + ("   serial: one host at a time" if doc["serial"] else "")]
    if doc["preconditions"]:
        lines.append(f"preconditions: {', '.join(doc['preconditions'])}")
    lines.append("steps:")
    for i, s in enumerate(doc["steps"], 1):
        lines.append(f"  {i}. {s['id']}: {s['action']} {s['runs']}")
        lines.append(f"       on: {', '.join(s['hosts']) or '(no host of this run: skipped)'}"
                     + (f"   timeout: {s['timeout_s']:g}s" if "timeout_s" in s else "")
                     + (f"   retries: {s['retries']}" if s.get("retries") else ""))
        if s["rollback"] is not None:
            lines.append(f"       undo: {s['rollback']}")
    lines.append("triggers:" if doc["triggers"] else "triggers: none")
    for t in doc["triggers"]:
        baseline = ""
        for b in t.get("baselines", []):
            baseline += f"   baseline {b['host']}: {b['value']}"
        lines.append(f"  {t['name']}: {t['describe']}{baseline}")
    lines.append("(plan only: nothing was run)")
    return "\n".join(lines)


def status_document(project: Project, hosts: list[Host], journal: Journal) -> dict[str, Any]:
    out: dict[str, Any] = {"hosts": {}}
    holders = {h.host: h for h in journal.holders()}
    for host in hosts:
        phases: dict[str, Any] = {}
        for number in sorted(project.phases):
            rec = journal.phase_record(host.name, number)
            entry: dict[str, Any] = {"state": rec.state.value, "run_id": rec.run_id,
                                     "updated_at": rec.updated_at}
            if rec.state in (PhaseState.ROLLED_BACK, PhaseState.ROLLBACK_FAILED,
                             PhaseState.ROLLING_BACK, PhaseState.INTERRUPTED) and rec.reason:
                entry["reason"] = rec.reason
            if rec.state in (PhaseState.RUNNING, PhaseState.BAKING, PhaseState.COMPLETED,
                             PhaseState.ROLLING_BACK):
                triggers = [t for t in journal.trigger_states(host.name, number)
                            if t["run_id"] == rec.run_id or rec.state is PhaseState.COMPLETED]
                if triggers:
                    entry["triggers"] = [dict(t, line=_trigger_line(t)) for t in triggers]
            phases[str(number)] = entry
        host_doc: dict[str, Any] = {"phases": phases}
        holder = holders.get(host.name)
        if holder is not None:
            host_doc["held_by"] = {"run_id": holder.run_id, "pid": holder.process.pid,
                                   "machine": holder.process.machine,
                                   "command": holder.command, "since": holder.since}
        out["hosts"][host.name] = host_doc
    return out


def _trigger_line(t: dict[str, Any]) -> str:
    """'vram_degradation  pending  1250 vs limit 1200 (baseline 1000)  breaching since ...'."""
    value = "no data" if t["value"] is None else f"{t['value']:g}"
    limit = "" if t["threshold"] is None else f" vs limit {t['threshold']:g}"
    base = "" if t["baseline"] is None else f" (baseline {t['baseline']:g})"
    since = f"  breaching since {t['breaching_since']}" if t["breaching_since"] else ""
    return f"{t['trigger']:<24} {t['status']:<8} {value}{limit}{base}{since}"


def status_text(doc: dict[str, Any]) -> str:
    lines = []
    for host, hdoc in doc["hosts"].items():
        lines.append(f"{host}:")
        if "held_by" in hdoc:
            h = hdoc["held_by"]
            lines.append(f"  held by run {h['run_id']} (pid {h['pid']} on {h['machine']}, "
                         f"{h['command']!r}, since {h['since']})")
        for number, p in hdoc["phases"].items():
            when = f"  {p['updated_at']}" if p["updated_at"] else ""
            run = f"  run {p['run_id']}" if p["run_id"] else ""
            lines.append(f"  phase {number}: {p['state']:<16}{when}{run}")
            if "reason" in p:
                lines.append(f"      why: {p['reason']}")
            for t in p.get("triggers", []):
                lines.append(f"      {t['line']}")
    return "\n".join(lines)


def history_text(doc: dict[str, Any]) -> str:
    lines = []
    for e in doc["events"]:
        where = " ".join(x for x in (e["host"] or "-", f"phase {e['phase']}"
                                     if e["phase"] is not None else "",
                                     e["step"] or "") if x)
        detail = f"  {e['detail']}" if e["detail"] else ""
        if e["kind"] == "rehearsal" and detail:
            detail = "  (dry run)"
        lines.append(f"{e['at']}  {e['run_id'] or '-'}  {where:<28} {e['kind']}{detail}")
    return "\n".join(lines) or "(no events)"
