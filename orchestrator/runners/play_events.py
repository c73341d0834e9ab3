"""What an Ansible run's job events say about each host, wherever the run happened.

ansible-runner hands the same job events to its `event_handler` whether it ran the
playbook itself (runners/ansible.py) or replays a worker's stream from an execution
node (`streamer='process'`, runners/nodes.py). `PlayEvents` reads them the way the local
runner does: task lines to the operator, the task each host is on, the first failed
task with its error, unreachable hosts, and the play recap's stats; `results` turns them
into one `Result` per host with ansible.py's own `_host_result`, so a failure reads the
same from a node as from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

from orchestrator.runners.ansible import _host_result, task_error
from orchestrator.runners.base import OutputSink, Result


@dataclass
class PlayEvents:
    """An `event_handler` for ansible-runner, and what it learnt."""

    on_output: OutputSink
    #: appended with each event's `stdout` (the run's log, as ansible-runner writes it)
    log: IO[str] | None = None
    #: added to each TASK line shown to the operator (e.g. " [node east]")
    where: str = ""
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> why
    failed_task: dict[str, tuple[str, str]] = field(default_factory=dict)  # first failure
    running: dict[str, str] = field(default_factory=dict)  # host -> the task it is on
    stats: dict[str, Any] = field(default_factory=dict)  # the play recap, when it came

    def handle(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        kind = event.get("event", "")
        host = str(data.get("host") or "")
        task = str(data.get("task") or data.get("task_action") or "")
        if self.log is not None and event.get("stdout"):
            self.log.write(str(event["stdout"]) + "\n")
            self.log.flush()
        if kind == "playbook_on_task_start":
            self.on_output("", f"TASK {data.get('task', '')}{self.where}")
        elif kind == "runner_on_start" and host:
            self.running[host] = task
        elif kind == "playbook_on_stats":
            self.stats = {k: data.get(k) or {} for k in ("failures", "dark", "processed")}
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable",
                      "runner_on_skipped"):
            status = kind.removeprefix("runner_on_")
            res = data.get("res") or {}
            if kind == "runner_on_ok" and res.get("changed"):
                status = "changed"
            error = task_error(res)
            if status == "unreachable" and host:
                self.unreachable[host] = error[:200]
            if status in ("failed", "unreachable") and host and \
                    not data.get("ignore_errors") and host not in self.failed_task:
                self.failed_task[host] = (task, error)
            line = f"{status}: {data.get('task', '')}"
            if status in ("failed", "unreachable") and error:
                line += f" -- {error[:300]}"
            self.on_output(host, line)
        return True

    def results(self, names: list[str], status: str, rc: int | None, cancel_reason: str,
                timeout: float | None, log: str) -> dict[str, Result]:
        """One result per host from the run's status ('successful', 'failed', 'canceled',
        'timeout') and the recap, as the local runner words them."""
        out: dict[str, Result] = {}
        for name in names:
            task, error = self.failed_task.get(name, (self.running.get(name, ""), ""))
            out[name] = _host_result(name, status, rc, self.stats.get("dark") or {},
                                     self.stats.get("failures") or {},
                                     self.stats.get("processed") or {},
                                     self.unreachable.get(name, ""), cancel_reason, timeout,
                                     task=task, error=error, log=log)
        return out
