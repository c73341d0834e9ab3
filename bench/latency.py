"""Detection and reaction latency of triggers (issue 3's performance goals).

1. breach -> `trigger_fired`: an http and a tcp metric served in this process are
   broken at a known wall-clock moment while a phase soaks, and a scripted metric
   turns bad SCRIPTED_AT seconds after the run started (measured from the run's first
   journal event, which precedes the monitor's start, so that figure errs high); the
   goal is at most poll_interval + 0.2 s.
2. `trigger_fired` -> first rollback playbook starting, while a 60 s playbook was
   running (it must be cancelled first); the goal is at most 0.5 s.

Real engine, real ansible-runner, local-connection host. Prints one line per run
and a summary. Run: python bench/latency.py [RUNS]
"""

from __future__ import annotations

import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.app import App  # noqa: E402
from orchestrator.core.clock import CancelToken  # noqa: E402
from orchestrator.engine.context import AutoYes  # noqa: E402
from tests.support.projects import make_project  # noqa: E402
from tests.support.servers import AgentServer, serving  # noqa: E402

POLL = 1.0
SCRIPTED_AT = 4.5  # between two polls, not on one

MIGRATION = """\
name: bench
inventory: inventory/hosts.yml
poll_interval: {poll}s
metrics:
  failures: {{source: http, url: '{agent}/health', field: model_load_failures}}
  peer: {{source: tcp, address: '127.0.0.1:{port}'}}
  timeline: {{source: scripted, values: [{{at: 0s, value: 0}}, {{at: {at}s, value: 1}}]}}
triggers:
  http_trigger: {{metric: failures, above: 0}}
  tcp_trigger: {{metric: peer, failing: true}}
  scripted_trigger: {{metric: timeline, above: 0}}
"""

SLOW = """\
- name: slow
  hosts: all
  gather_facts: false
  tasks:
    - name: started
      ansible.builtin.file: {path: "{{ marker_dir }}/slow-started", state: touch, mode: "0644"}
    - name: long
      ansible.builtin.command: sleep 60
      changed_when: true
"""


def stamp(at: str) -> float:
    return datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=__import__("datetime").UTC).timestamp()


class Listener:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                return

    def close(self) -> None:
        # close() alone leaves the socket listening until the accept() blocked in the
        # other thread returns (it holds the file), so the first probe after the "breach"
        # would still connect; shutdown() stops listening at once and wakes accept().
        self.open = False
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def one(kind: str, tmp: Path, agent: AgentServer) -> tuple[float, float | None]:
    listener = Listener()
    agent.health["model_load_failures"] = 0
    proj = make_project(tmp, migration=MIGRATION.format(poll=POLL, agent=agent.url,
                                                        port=listener.port, at=SCRIPTED_AT),
                        hosts=("main",))
    proj.write("playbooks/slow.yml", SLOW)
    trig = f"{kind}_trigger"
    proj.phase(1, "bench", f"phase: 1\ntriggers: [{trig}]\nsteps:\n  - id: slow\n"
               "    playbook: playbooks/slow.yml\n    rollback: rollback/untouch.yml\n")
    app = App(root=proj.root)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(app.run_phase(
        1, ("main",), False, AutoYes(), CancelToken(), "bench")))
    t.start()
    while not (proj.markers / "slow-started").exists():
        time.sleep(0.05)
    if kind != "scripted":
        time.sleep(POLL * 1.5)  # a few good samples
    breach = time.time()
    if kind == "http":
        agent.health["model_load_failures"] = 1
    elif kind == "tcp":
        listener.close()
    t.join(120)
    events = app.journal.events()
    if kind == "scripted":
        breach = stamp(events[0].at) + SCRIPTED_AT
    fired = next(stamp(e.at) for e in events if e.kind == "trigger_fired")
    undo = next((stamp(e.at) for e in events if e.kind == "step_rollback_started"), None)
    return fired - breach, (undo - fired) if undo else None


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    detect: dict[str, list[float]] = {"http": [], "tcp": [], "scripted": []}
    react: list[float] = []
    with serving(AgentServer()) as agent:
        for kind in detect:
            for i in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    d, r = one(kind, Path(tmp), agent)
                detect[kind].append(d)
                if r is not None:
                    react.append(r)
                print(f"{kind} run {i + 1}: breach->fired {d:.3f} s, fired->undo "
                      f"{r if r is None else f'{r:.3f}'} s")
    for kind, values in detect.items():
        print(f"detection {kind}: median {statistics.median(values):.3f} s, max "
              f"{max(values):.3f} s (goal <= {POLL + 0.2:.1f} s)")
    print(f"fired -> first rollback playbook: median {statistics.median(react):.3f} s, max "
          f"{max(react):.3f} s (goal <= 0.5 s, a 60 s playbook was running)")


if __name__ == "__main__":
    main()
