"""Playbooks through ansible-runner and the real `ansible-playbook`.

One Ansible run per step for all of the run's hosts (`limit`), so Ansible's forks
give the parallelism. Task progress is streamed to the operator from runner
events; per-host outcome comes from the play recap (`failures`, `dark`).
Cancellation and the step's timeout go through ansible-runner's `cancel_callback`,
polled while the play runs; before answering "stop" it kills the playbook's whole
process tree itself, because ansible-runner's own kill (the playbook's process group)
misses ansible-core's task workers, which run in sessions of their own.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from orchestrator._exceptions import RunnerError
from orchestrator.core.clock import CancelToken
from orchestrator.runners.base import GroupResult, PlaybookRequest, Result
from orchestrator.runners.descendants import cmdline, descendants, kill_trees


class AnsiblePlaybookRunner:
    def __init__(self, forks: int = 10) -> None:
        self.forks = forks

    def run_playbook(self, request: PlaybookRequest, cancel: CancelToken) -> GroupResult:
        if shutil.which("ansible-playbook") is None:
            raise RunnerError("ansible-playbook is not on PATH: install ansible-core")
        import ansible_runner  # heavy: imported only when a playbook step runs

        names = [h.name for h in request.hosts]
        private = request.artifacts_dir
        private.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmdline = f"--forks {self.forks}" + (" --check --diff" if request.check else "")

        def on_event(event: dict[str, Any]) -> bool:
            data = event.get("event_data") or {}
            kind = event.get("event", "")
            host = str(data.get("host") or "")
            if kind == "playbook_on_task_start":
                request.on_output("", f"TASK {data.get('task', '')}")
            elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable",
                          "runner_on_skipped"):
                status = kind.removeprefix("runner_on_")
                res = data.get("res") or {}
                if kind == "runner_on_ok" and res.get("changed"):
                    status = "changed"
                msg = res.get("msg") or res.get("stderr") or ""
                line = f"{status}: {data.get('task', '')}"
                if status in ("failed", "unreachable") and msg:
                    line += f" -- {str(msg).strip()[:300]}"
                request.on_output(host, line)
            return True

        env = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
               "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
        for passthrough in ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_SSH_ARGS"):
            if passthrough in os.environ:
                env[passthrough] = os.environ[passthrough]
        stop = _Stopper(cancel, request.timeout, marker=f"@{private / 'env' / 'extravars'} ")
        try:
            runner = ansible_runner.run(
                private_data_dir=str(private),
                playbook=str(request.playbook),
                inventory=str(request.inventory),
                limit=",".join(names),
                extravars=request.extravars,
                cmdline=cmdline,
                envvars=env,
                event_handler=on_event,
                cancel_callback=stop.should_stop,
                quiet=True,
                # how often ansible-runner polls cancel_callback: a fired trigger must reach
                # the playbook within a fraction of a second, not the default 5 s
                settings={"pexpect_timeout": 0.1, "suppress_ansible_output": True},
                project_dir=str(request.playbook.parent),
            )
        except Exception as exc:  # ansible-runner raises plain exceptions on bad setup
            raise RunnerError(f"ansible-runner could not start {request.playbook}: {exc}") from exc

        status = "timeout" if stop.timed_out else runner.status
        stats = runner.stats or {}
        failures = stats.get("failures") or {}
        dark = stats.get("dark") or {}
        processed = stats.get("processed") or {}
        out: dict[str, Result] = {}
        for name in names:
            if status == "canceled":
                out[name] = Result(name, False, f"cancelled: {cancel.reason}", runner.rc,
                                   cancelled=True)
            elif status == "timeout":
                out[name] = Result(name, False, f"timed out after {request.timeout:g}s", runner.rc)
            elif name in dark:
                out[name] = Result(name, False, "host unreachable", runner.rc)
            elif name in failures:
                out[name] = Result(name, False, f"{failures[name]} task(s) failed", runner.rc)
            elif status != "successful" and name not in processed:
                out[name] = Result(name, False, f"ansible-playbook {status} (rc {runner.rc})",
                                   runner.rc)
            elif name not in processed and processed:
                out[name] = Result(name, False, "host was not part of the play", runner.rc)
            else:
                out[name] = Result(name, True, "ok", runner.rc)
        return GroupResult(out)


class _Stopper:
    """ansible-runner's cancel callback: the run's cancel token and the step's timeout.

    On the first "stop" it SIGKILLs every process of this playbook run: the processes
    below us whose command line names this run's extravars file (`ansible-playbook -e
    @PRIVATE/env/extravars`, unique per step and host), with everything below them.
    """

    def __init__(self, cancel: CancelToken, timeout: float | None, marker: str) -> None:
        self.cancel = cancel
        self.deadline = time.monotonic() + timeout if timeout else None
        self.marker = marker
        self.timed_out = False
        self.stopped = False

    def should_stop(self) -> bool:
        if self.stopped:
            return True
        if not self.cancel.cancelled:
            if self.deadline is None or time.monotonic() < self.deadline:
                return False
            self.timed_out = True
        self.stopped = True
        mine = descendants(os.getpid())
        kill_trees([pid for pid in mine if self.marker in cmdline(pid)])
        return True
