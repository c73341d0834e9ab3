"""Documents for plan, status and history, and their text rendering.

The JSON shapes are the spec's; the text views are the same data laid out for a
terminal. Nothing here reads files or changes state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.durations import format_duration
from orchestrator.core.model import Phase, Project, StepAction
from orchestrator.core.states import ACTIVE, PhaseState
from orchestrator.core.timestamps import parse_time
from orchestrator.reporting import show_value, trigger_kinds
from orchestrator.state.journal import Journal
from orchestrator.state.run_rows import PhaseRow


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
            "execution": execution_counts(project, hosts),
            "bake_s": phase.bake, "serial": phase.serial,
            "preconditions": list(phase.preconditions), "steps": steps, "triggers": triggers}


def execution_counts(project: Project, hosts: list[Host]) -> dict[str, Any]:
    """How many hosts each execution node runs ("here": this machine), with the node's
    inventory host; empty without `execution.nodes`."""
    if not project.execution_nodes:
        return {}
    from orchestrator.runners.routing import HERE, split_by_node

    out: dict[str, Any] = {}
    for node, part in split_by_node(hosts).items():
        spec = project.execution_nodes.get(node)
        out["here" if node == HERE else node] = {
            "hosts": len(part), "node_host": spec.host if spec else None}
    return out


def plan_text(doc: dict[str, Any]) -> str:
    lines = [f"phase {doc['phase']}: {doc['name']}  ({doc['file']})",
             f"hosts: {', '.join(doc['hosts'])}"
             + (f"   requires: {', '.join(map(str, doc['requires']))}" if doc["requires"] else "")
             + (f"   bake: {doc['bake_s']:g}s" if doc["bake_s"] else "")
             + ("   serial: one host at a time" if doc["serial"] else "")]
    if doc["preconditions"]:
        lines.append(f"preconditions: {', '.join(doc['preconditions'])}")
    if doc.get("execution"):
        parts = [f"{name} {e['hosts']} host{'s' if e['hosts'] != 1 else ''}"
                 + (f" (on {e['node_host']})" if e["node_host"] else " (this machine)")
                 for name, e in doc["execution"].items()]
        lines.append(f"playbooks run on: {', '.join(parts)}")
    if doc.get("requirements"):
        lines.append("requirements (now):")
        for r in doc["requirements"]:
            mark = "met" if r["met"] else "NOT MET"
            lines.append(f"  [{mark}] host {r['for_host']}: {r['text']}")
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


_WITH_REASON = frozenset(s.value for s in (PhaseState.ROLLED_BACK, PhaseState.ROLLBACK_FAILED,
                                            PhaseState.ROLLING_BACK, PhaseState.INTERRUPTED))
_WITH_TRIGGERS = frozenset(s.value for s in (PhaseState.RUNNING, PhaseState.BAKING,
                                             PhaseState.COMPLETED, PhaseState.ROLLING_BACK))
_ACTIVE_VALUES = frozenset(s.value for s in ACTIVE)  # a string test, not 40,000 enum calls
_COMPLETED = PhaseState.COMPLETED.value


def status_document(project: Project, hosts: list[Host], journal: Journal) -> dict[str, Any]:
    """`status`: every phase of every host, as the journal's rows say (SPEC's JSON shape).

    At 10,000 hosts x 4 phases this is 40,000 entries: each is built once, from the
    stored row (state as text: no enum, no record object per row), with one query for
    the phase states, one for the trigger states and one for the holders."""
    holders = {h.host: h for h in journal.holders()}
    rows = journal.phase_rows()
    trigger_rows = journal.all_trigger_states([h.name for h in hosts])
    judged = [n for n, p in project.phases.items() if p.analysis is not None]
    scores = journal.latest_events("analysis_completed", sorted(
        {row[1] for (_, n), row in rows.items() if n in judged and row[1]})) \
        if judged else {}
    kinds = trigger_kinds(project) if trigger_rows else {}
    numbers = [(n, str(n)) for n in sorted(project.phases)]
    out: dict[str, Any] = {}
    for host in hosts:
        name = host.name
        phases: dict[str, Any] = {}
        for number, key in numbers:
            row = rows.get((name, number))
            if row is None:
                phases[key] = {"state": "pending", "run_id": None, "updated_at": None}
                continue
            state, run_id, updated_at, reason = row
            entry: dict[str, Any] = {"state": state, "run_id": run_id,
                                     "updated_at": updated_at}
            if reason and state in _WITH_REASON:
                entry["reason"] = reason
            if state in _WITH_TRIGGERS and trigger_rows:
                triggers = [dict(t, kind=kinds.get(t["trigger"]))
                            for t in trigger_rows.get((name, number), ())
                            if t["run_id"] == run_id or state == _COMPLETED]
                if triggers:
                    entry["triggers"] = [dict(t, line=_trigger_line(t)) for t in triggers]
            scored = scores.get(run_id) if scores and run_id else None
            if scored is not None and scored.phase == number and scored.payload:
                entry["analysis"] = {k: scored.payload.get(k)
                                     for k in ("wave", "score", "result")}
            phases[key] = entry
        host_doc: dict[str, Any] = {"phases": phases}
        holder = holders.get(name)
        if holder is not None:
            host_doc["held_by"] = {"run_id": holder.run_id, "pid": holder.process.pid,
                                   "machine": holder.process.machine,
                                   "command": holder.command, "since": holder.since}
        out[name] = host_doc
    return {"hosts": out}


def _trigger_line(t: dict[str, Any]) -> str:
    """'vram_degradation  pending  1250 vs limit 1200 (baseline 1000)  breaching since ...';
    a pass/fail metric's value is `pass`/`fail`."""
    value = show_value(t["value"], t.get("kind"), t["threshold"])
    limit = "" if t["threshold"] is None else f" vs limit {t['threshold']:g}"
    base = "" if t["baseline"] is None else f" (baseline {t['baseline']:g})"
    since = f"  breaching since {t['breaching_since']}" if t["breaching_since"] else ""
    return f"{t['trigger']:<24} {t['status']:<8} {value}{limit}{base}{since}"


#: more hosts than this and `status` summarises unless asked for the full table
SUMMARY_OVER = 20
_ATTENTION = ("rollback_failed", "interrupted", "rolled_back")


def status_text(doc: dict[str, Any], full: bool = False) -> str:
    """The full table for a few hosts (or `full`: --host, -v); a summary past SUMMARY_OVER."""
    if not full and len(doc["hosts"]) > SUMMARY_OVER:
        return status_summary(doc)
    return status_table(doc)


def status_summary(doc: dict[str, Any]) -> str:
    """One screen for a fleet: per phase its hosts counted by state; the hosts that need
    attention (rollback failed, interrupted, rolled back) with their reasons; the running
    phases with their live trigger values, worst first; and who holds the hosts."""
    hosts: dict[str, Any] = doc["hosts"]
    counts: dict[str, dict[str, int]] = {}
    attention: list[tuple[int, str, str, dict[str, Any]]] = []
    active: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for host, hdoc in hosts.items():
        for number, p in hdoc["phases"].items():
            per = counts.setdefault(number, {})
            per[p["state"]] = per.get(p["state"], 0) + 1
            if p["state"] in _ATTENTION:
                attention.append((_ATTENTION.index(p["state"]), number, host, p))
            if p["state"] in _ACTIVE_VALUES:
                active.setdefault(number, []).append((host, p))
    lines = [f"{len(hosts)} hosts (summary; --host or -v for the full table)"]
    order = ("completed", "running", "baking", "rolling_back", "rolled_back",
             "rollback_failed", "interrupted", "pending")
    for number, per in sorted(counts.items(), key=lambda kv: int(kv[0])):
        parts = [f"{state} {per[state]}" for state in order if per.get(state)]
        parts += [f"{state} {n}" for state, n in per.items() if state not in order]
        lines.append(f"  phase {number}: " + ", ".join(parts))
    if active:
        lines.append("running:")
    for number, members in sorted(active.items(), key=lambda kv: int(kv[0])):
        runs = sorted({str(p["run_id"]) for _, p in members if p["run_id"]})
        holders = sorted({_holder(hosts[h]["held_by"]) for h, _ in members
                          if "held_by" in hosts[h]})
        states: dict[str, int] = {}
        for _, p in members:
            states[p["state"]] = states.get(p["state"], 0) + 1
        lines.append(f"  phase {number} on {len(members)} hosts ("
                     + ", ".join(f"{s} {n}" for s, n in states.items())
                     + f"), run {', '.join(runs) or '?'}"
                     + (f", held by {'; '.join(holders)}" if holders else ""))
        lines += [f"    {line}" for line in _trigger_summary(members)]
    if attention:
        lines.append(f"needs attention ({len(attention)}):")
        for _, number, host, p in sorted(attention, key=lambda a: (a[0], int(a[1]), a[2]))[:20]:
            why = f": {p['reason']}" if p.get("reason") else ""
            lines.append(f"  {host} phase {number} {p['state']}{why}")
        if len(attention) > 20:
            lines.append(f"  ... and {len(attention) - 20} more (migrate status -v)")
    observing = [(h, hdoc["observation"]) for h, hdoc in hosts.items()
                 if hdoc.get("observation")]
    if observing:
        lines.append(f"observing {len(observing)} hosts: " + _observation(observing[0][1]))
    return "\n".join(lines)


def _holder(h: dict[str, Any]) -> str:
    return f"run {h['run_id']} (pid {h['pid']} on {h['machine']})"


def _trigger_summary(members: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Per trigger: hosts counted by status, and the worst host's line."""
    per: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for host, p in members:
        for t in p.get("triggers", []):
            per.setdefault(t["trigger"], []).append((host, t))
    rank = {"firing": 0, "pending": 1}
    out = []
    for name, rows in sorted(per.items()):
        def worst(item: tuple[str, dict[str, Any]]) -> tuple[int, float]:
            t = item[1]
            ratio = t["value"] / t["threshold"] if t["value"] is not None and t["threshold"] \
                else 0.0
            return rank.get(t["status"], 2), -ratio
        rows.sort(key=worst)
        statuses: dict[str, int] = {}
        for _, t in rows:
            statuses[t["status"]] = statuses.get(t["status"], 0) + 1
        host, t = rows[0]
        value = show_value(t["value"], t.get("kind"), t["threshold"])
        limit = "" if t["threshold"] is None else f" vs limit {t['threshold']:g}"
        base = "" if t["baseline"] is None else f" (baseline {t['baseline']:g})"
        since = f", breaching for {_since(t['breaching_since'])}" if t["breaching_since"] \
            else ""
        out.append(f"{name}: " + ", ".join(f"{s} {n}" for s, n in sorted(
            statuses.items(), key=lambda kv: rank.get(kv[0], 2)))
            + f"; worst {host} ({t['status']}): {value}{limit}{base}{since}")
    return out


def _since(stamp: str) -> str:
    """'3m12s' since a journal stamp (the stamp itself if it does not parse)."""
    try:
        at = parse_time(stamp)
    except ValueError:
        return stamp
    whole = max(int((datetime.now(UTC) - at).total_seconds()), 0)
    h, rest = divmod(whole, 3600)
    return (f"{h}h" if h else "") + f"{rest // 60}m{rest % 60:02d}s"


def _observation(o: dict[str, Any]) -> str:
    window = o.get("window_s")
    done = f"{o['elapsed_s']:.0f}s" + (f" of {window:.0f}s" if window else "")
    return f"watch {o.get('run_id')}: {done}, {o.get('checkpoints', 0)} checkpoint(s)"


def status_table(doc: dict[str, Any]) -> str:
    lines = []
    for host, hdoc in doc["hosts"].items():
        lines.append(f"{host}:")
        if "held_by" in hdoc:
            h = hdoc["held_by"]
            lines.append(f"  held by run {h['run_id']} (pid {h['pid']} on {h['machine']}, "
                         f"{h['command']!r}, since {h['since']})")
        if hdoc.get("observation"):
            lines.append(f"  observation: {_observation(hdoc['observation'])}")
        for number, p in hdoc["phases"].items():
            when = f"  {p['updated_at']}" if p["updated_at"] else ""
            run = f"  run {p['run_id']}" if p["run_id"] else ""
            lines.append(f"  phase {number}: {p['state']:<16}{when}{run}")
            if "reason" in p:
                lines.append(f"      why: {p['reason']}")
            if "analysis" in p:
                a = p["analysis"]
                wave = f" (wave {a['wave']})" if a.get("wave") is not None else ""
                lines.append(f"      canary score {a['score']:g}: {a['result']}{wave}")
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


def program_document(project: Project, journal: Journal, now: datetime | None = None,
                     hosts: bool = True) -> dict[str, Any]:
    """`status --all`: {"migrations": {NAME: {"host_count": N, "hosts": {...as status...},
    "phases": {N: {"states": {state: count}, "observed_s", "waited_by": [...]}}}}}.

    The phases come folded by the journal's server (`phase_tally`): `observed_s` is how
    long the phase has been completed on all its completed hosts (since the newest
    completion); `waited_by` names what this project's phase files say waits for it.
    `hosts` (every host's phases, one query for every phase state of every migration)
    only when asked: the text shows counts, and 40,000 rows cost more than the rest."""
    now = now or datetime.now(UTC)
    waiting: dict[tuple[str, int], list[str]] = {}
    for phase in project.phases.values():
        for n in phase.requires:
            waiting.setdefault((project.name, n), []).append(f"{project.name} phase "
                                                             f"{phase.number}")
        for r in phase.cross:
            waiting.setdefault((r.migration, r.phase), []).append(
                f"{project.name} phase {phase.number}"
                + (f" (observed {format_duration(r.observed)})" if r.observed else ""))
    tally = journal.phase_tally()
    rows = journal.every_phase_row() if hosts else {}
    out: dict[str, Any] = {}
    for migration in sorted(tally.hosts):
        name = migration or project.name
        phases: dict[str, Any] = {}
        completed = tally.completed.get(migration, {})
        for number, states in sorted(tally.states.get(migration, {}).items()):
            stamps = completed.get(number)
            observed = min((now - parse_time(t)).total_seconds() for t in stamps) \
                if stamps else None
            phases[str(number)] = {"states": states, "observed_s": observed,
                                   "waited_by": waiting.get((name, number), [])}
        entry: dict[str, Any] = {"host_count": tally.hosts[migration]}
        if hosts:
            entry["hosts"] = _program_hosts(rows.get(migration, {}))
        entry["phases"] = phases
        out[name] = entry
    return {"migrations": out, "journal": journal.location}


def _program_hosts(rows: dict[tuple[str, int], PhaseRow]) -> dict[str, Any]:
    """{host: {"phases": {N: {state, run_id, updated_at[, reason]}}}}, hosts and phases in
    order."""
    by_host: dict[str, list[tuple[int, PhaseRow]]] = {}
    for (host, number), row in rows.items():
        by_host.setdefault(host, []).append((number, row))
    out: dict[str, Any] = {}
    for host in sorted(by_host):
        phases: dict[str, Any] = {}
        for number, (state, run_id, updated_at, reason) in sorted(by_host[host]):
            entry = {"state": state, "run_id": run_id, "updated_at": updated_at}
            if reason:
                entry["reason"] = reason
            phases[str(number)] = entry
        out[host] = {"phases": phases}
    return out


def program_text(doc: dict[str, Any]) -> str:
    if not doc["migrations"]:
        return f"no migration in the journal at {doc['journal']} yet"
    lines: list[str] = []
    for name, m in doc["migrations"].items():
        lines.append(f"{name}  ({m['host_count']} hosts)")
        for number, p in sorted(m["phases"].items(), key=lambda kv: int(kv[0])):
            counts = ", ".join(f"{n} {state}" for state, n in sorted(p["states"].items()))
            row = f"  phase {number}: {counts}"
            if p["observed_s"] is not None:
                row += f"; observed {format_duration(p['observed_s'])}"
            if p["waited_by"]:
                row += f"; {', '.join(p['waited_by'])} waits for it"
            lines.append(row)
    return "\n".join(lines)
