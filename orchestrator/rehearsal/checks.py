"""Judging a drill by what the sandbox really shows, against a scenario's `expect:`.

The engine's report could say "rolled back" while the agent still runs the new
revision; a drill trusts only facts it can observe: the journal's recorded states
and structured event payloads (never the prose of a reason), the revision the running
agent process reports, whether a port answers, which files exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.config.inventory import Host, Inventory
from orchestrator.core.outcomes import RunReport
from orchestrator.rehearsal.sandbox import Sandbox, agent_revision, port_open
from orchestrator.rehearsal.scenario import EventExpect, Named, Scenario
from orchestrator.state.journal import Event, Journal


@dataclass
class Check:
    what: str
    ok: bool
    seen: str
    #: checks of one expectation on several hosts share it ("phase 1 completed"), so the
    #: drill's summary prints them as one line while they all pass
    group: str | None = None
    host: str | None = None


def summary_lines(checks: list[Check]) -> list[str]:
    """`[ok]`/`[NO]` lines of a drill's checks for a screen: the passing checks of one
    expectation on several hosts are one line (`phase 1 completed on HOST1, HOST2`), every
    failing check keeps its own line with what was seen."""
    lines: list[str] = []
    i = 0
    while i < len(checks):
        c = checks[i]
        run = [c]
        while c.group is not None and i + len(run) < len(checks) \
                and checks[i + len(run)].group == c.group:
            run.append(checks[i + len(run)])
        if len(run) > 1 and all(r.ok for r in run) and len({r.seen for r in run}) == 1:
            lines.append(f"  [ok] {c.group} on {', '.join(str(r.host) for r in run)}: {c.seen}")
        else:
            lines += [f"  [{'ok' if r.ok else 'NO'}] {r.what}: {r.seen}" for r in run]
        i += len(run)
    return lines


def verify(scenario: Scenario, exit_code: int, reports: list[RunReport], journal: Journal,
           inventory: Inventory, sandbox: Sandbox) -> list[Check]:
    """Every expectation of the scenario as one Check, in the order the file gives them."""
    e = scenario.expect

    def hosts(n: Named) -> list[Host]:
        return inventory.resolve([n.name])

    checks = [Check(f"exit code {e.exit_code}", exit_code == e.exit_code, str(exit_code))]
    for state, by_phase in e.phase_states.items():
        for phase, names in sorted(by_phase.items()):
            for n in names:
                for host in hosts(n):
                    seen = journal.phase_record(host.name, phase).state.value
                    checks.append(Check(f"phase {phase} {state} on {host.name}", seen == state,
                                        seen, f"phase {phase} {state}", host.name))
    events = journal.events()
    for expect in e.events:
        checks.append(_event_check(expect, events, inventory))
    for n, revision in e.revision.items():
        for host in hosts(n):
            seen = agent_revision(host, scenario.health_url)
            checks.append(Check(f"the agent on {host.name} runs revision {revision}",
                                seen == revision, seen))
    for n, ports in e.ports.items():
        for host in hosts(n):
            for var, want_open in ports.items():
                port = host.vars.get(var)
                is_open = port is not None and port_open(host.address, int(port))
                checks.append(Check(f"{host.name}'s {var} ({port}) "
                                    + ("answers" if want_open else "is cut off"),
                                    is_open == want_open, "open" if is_open else "closed"))
    if e.needs_human is not None and e.needs_human is not False:
        lines = reports[-1].needs_human if reports else []
        wanted = e.needs_human if isinstance(e.needs_human, str) else ""
        ok = bool(lines) and (not wanted or any(wanted in line for line in lines))
        checks.append(Check("the run names the step that needs a human"
                            + (f" ({wanted})" if wanted else ""), ok,
                            "; ".join(lines) if lines else "nothing named"))
    elif e.needs_human is False:
        lines = reports[-1].needs_human if reports else []
        checks.append(Check("nothing needs a human", not lines, "; ".join(lines) or "nothing"))
    for present, files in ((True, e.files_exist), (False, e.files_absent)):
        for n, paths in files.items():
            for host in hosts(n):
                base = sandbox.dir_of(host)
                for rel in paths:
                    exists = (base / rel).exists()
                    checks.append(Check(f"{rel} {'exists' if present else 'is absent'} on "
                                        f"{host.name}", exists == present,
                                        f"{base / rel}: {'present' if exists else 'absent'}"))
    return checks


def _event_check(expect: EventExpect, events: list[Event], inventory: Inventory) -> Check:
    names = {h.name for h in inventory.resolve([expect.host.name])} if expect.host else None

    def matches(ev: Event) -> bool:
        payload: dict[str, Any] = ev.payload or {}
        if ev.kind != expect.kind:
            return False
        if names is not None and ev.host not in names and payload.get("host") not in names:
            return False
        if expect.phase is not None and ev.phase != expect.phase:
            return False
        if expect.step is not None and ev.step != expect.step:
            return False
        return all(payload.get(k) == v for k, v in expect.payload.items())

    found = [ev for ev in events if matches(ev)]
    ok = bool(found) if expect.count is None else len(found) == expect.count
    seen = f"{len(found)} journaled"
    hosts = sorted({str(h) for ev in found
                    if (h := ev.host or (ev.payload or {}).get("host")) is not None})
    if hosts and expect.host is None:
        seen += f" ({', '.join(hosts)})"
    return Check(expect.describe(), ok, seen)
