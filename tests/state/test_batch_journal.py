"""A poll cycle's journal writes (samples and trigger states) are one transaction.

At 200 hosts x 3 triggers a cycle was 1,200 commits; now it is one, on SQLite and on
PostgreSQL, and it writes exactly what the one-row methods would have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.project import load_project
from orchestrator.core.bus import RunBus
from orchestrator.core.clock import SystemClock
from orchestrator.monitor.trigger_monitor import TriggerMonitor
from orchestrator.state.journal import Journal
from tests.support.projects import make_project


def count_writes(journal: Journal) -> list[int]:
    """Count the store's write transactions from now on."""
    calls = [0]
    write = journal.store.write

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return write(*args, **kwargs)

    journal.store.write = counted  # type: ignore[method-assign]
    return calls


def test_a_cycle_is_one_transaction_with_the_rows_single_writes_would_make(
        journal: Journal) -> None:
    samples = [("r1", f"h{i}", 1, trig, "m", 2.5, None if i == 3 else float(i), i == 5,
                "ok", 1200.0 if trig == "vram" else None, 1000.0)
               for i in range(8) for trig in ("vram", "health")]
    states = [(f"h{i}", 1, trig, "r1", "pending" if i == 5 else "ok",
               None if i == 3 else float(i), 1200.0, None, "2026-01-01T00:00:00.000Z"
               if i == 5 else None, f"text {i}")
              for i in range(8) for trig in ("vram", "health")]
    writes = count_writes(journal)
    journal.record_cycle(samples, states)
    assert writes[0] == 1
    rows = journal.samples("r1")
    assert len(rows) == 16
    got = [(r["host"], r["trigger"], r["value"], r["breaching"], r["threshold"])
           for r in rows]
    want = [(h, trig, v, int(b), th) for _, h, _, trig, _, _, v, b, _, th, _ in samples]
    assert got == want
    assert len({r["at"] for r in rows}) == 1  # one cycle, one stamp
    h5 = journal.trigger_states("h5", 1)
    assert [(s["trigger"], s["status"], s["breaching_since"], s["text"]) for s in h5] == [
        ("health", "pending", "2026-01-01T00:00:00.000Z", "text 5"),
        ("vram", "pending", "2026-01-01T00:00:00.000Z", "text 5")]
    assert journal.trigger_states("h3", 1)[0]["value"] is None
    # a later cycle replaces each trigger's state, as set_trigger_state does
    journal.record_cycle([], [("h5", 1, "vram", "r1", "firing", 9.0, 1200.0, None, None, "x")])
    assert writes[0] == 2
    assert [s["status"] for s in journal.trigger_states("h5", 1)] == ["pending", "firing"]
    journal.record_cycle([], [])
    assert writes[0] == 2  # nothing to write, no transaction


def test_a_failed_cycle_write_leaves_neither_samples_nor_states(journal: Journal) -> None:
    sample = ("r1", "h1", 1, "vram", "m", 0.0, 1.0, False, "ok", None, None)
    good = ("h1", 1, "vram", "r1", "ok", 1.0, None, None, None, "ok")

    class Unstorable:  # no database adapts this: the second statement fails
        pass

    bad = ("h2", 1, "vram", "r1", "ok", Unstorable(), None, None, None, "ok")
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        journal.record_cycle([sample], [good, bad])  # type: ignore[list-item]
    assert journal.samples("r1") == []
    assert journal.trigger_states("h1", 1) == []


def test_the_monitor_journals_a_cycle_of_many_hosts_in_one_transaction(
        tmp_path: Path) -> None:
    hosts = tuple(f"h{i}" for i in range(20))
    proj = make_project(tmp_path, migration=(
        "name: cycle\ninventory: inventory/hosts.yml\npoll_interval: 1s\nmetrics:\n"
        "  vram:\n    source: scripted\n    values: [{at: 0s, value: 1000}]\n"
        "  health:\n    source: scripted\n    values: [{at: 0s, value: pass}]\n"
        "triggers:\n  t_vram: {metric: vram, above: 5000}\n"
        "  t_health: {metric: health, failing: true}\n"), hosts=hosts)
    proj.write("inventory/hosts.yml", "all:\n  vars:\n    ansible_connection: local\n"
               "  hosts:\n" + "".join(f"    {h}:\n" for h in hosts))
    proj.phase(1, "soak", "phase: 1\nsteps:\n  - id: soak\n    wait: 1s\n")
    project, inventory = load_project(proj.root)
    journal = Journal(tmp_path / "state.db")
    monitor = TriggerMonitor(project, inventory, journal, SystemClock(), None)
    monitor.prepare(RunBus("run-1"), project.phases[1], list(inventory.hosts.values()), False)
    writes = count_writes(journal)
    monitor.cycle()
    assert writes[0] == 1
    assert len(journal.samples("run-1")) == 40
    assert {s["status"] for h in hosts for s in journal.trigger_states(h, 1)} == {"ok"}
    journal.close()
