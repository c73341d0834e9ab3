"""When a step or an undo fails, the output names the host, the step, the Ansible task (or
command) that failed, its error message and the path of its full log (SPEC section 3).

A real ansible-playbook undo fails (`ansible.builtin.fail`) after a command step failed:
the operator's lines, the needs-human list and the JSON document all name the task, the
message and a log under `.migrate/runs/RUN_ID/` that exists and holds the message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.runners.ansible import _host_result, task_error
from orchestrator.runners.base import (
    CommandRequest,
    FailureKind,
    Result,
    describe_failure,
    display_path,
)
from orchestrator.runners.local import LocalCommandRunner
from tests.support.projects import make_project

PHASE = """\
phase: 1
name: Fails
steps:
  - id: deploy
    playbook: playbooks/touch.yml
    rollback: rollback/fails.yml
  - id: migrate-db
    command: 'echo starting; echo "disk full on /var/lib/db" >&2; exit 5'
    rollback_command: 'true'
"""

LOG = re.compile(r"\(log: ([^)]+)\)")


def _logs(text: str) -> list[Path]:
    return [Path(m) for m in LOG.findall(text)]


@pytest.mark.integration
def test_an_undo_that_fails_names_task_message_and_log(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "fails", PHASE)
    res = proj.migrate("--output", "json", "phase", "1", "--host", "main")
    assert res.returncode == 3, res.stderr  # an undo failed: a human is needed
    doc = json.loads(res.stdout)
    run_id = doc["run_id"]
    runs = proj.root / ".migrate" / "runs" / run_id

    # the step that failed: host, step, command, exit code, its last line, its log
    failed = next(line for line in res.stderr.splitlines() if "FAILED main: migrate-db" in line)
    assert "exited 5" in failed and "disk full on /var/lib/db" in failed, failed
    [step_log] = _logs(failed)
    assert step_log.is_file() and step_log.resolve().is_relative_to(runs.resolve())
    assert "disk full on /var/lib/db" in step_log.read_text()

    # the undo that failed: host, step, Ansible task, its message, its log
    undo = next(line for line in res.stderr.splitlines() if "UNDO FAILED" in line)
    assert "main" in undo and "deploy" in undo, undo
    assert 'task "fail" failed: cannot undo deploy' in undo, undo
    [undo_log] = _logs(undo)
    assert undo_log.is_file() and undo_log.resolve().is_relative_to(runs.resolve())
    assert "cannot undo deploy" in undo_log.read_text()

    # what a human must finish says the same, in the JSON document too
    [human] = doc["needs_human"]
    assert human.startswith("main: step deploy") and 'task "fail"' in human
    assert "cannot undo deploy" in human and _logs(human) == [undo_log]
    assert "a human is needed" in res.stderr.lower()


# --- the pieces, without a playbook ---------------------------------------------------------
def test_task_error_reads_msg_rc_stderr_and_loops() -> None:
    assert task_error({"msg": "cannot undo x"}) == "cannot undo x"
    shell = {"msg": "non-zero return code", "rc": 2, "stderr": "warn\nUnit agent not found.\n"}
    assert task_error(shell) == "non-zero return code (rc 2) -- Unit agent not found."
    loop = {"msg": "One or more items failed", "results": [
        {"failed": False, "msg": "ok"}, {"failed": True, "msg": "item b: no such file"}]}
    assert task_error(loop) == "item b: no such file"
    assert task_error({"stdout": "a\nlast words\n", "rc": 1}) == "(rc 1) -- last words" or \
        task_error({"stdout": "a\nlast words\n", "rc": 1}).endswith("(rc 1)")
    assert task_error({}) == ""


def test_ansible_failure_line_names_task_error_and_log(tmp_path: Path) -> None:
    log = tmp_path / "artifacts" / "1" / "stdout"
    r = _host_result("main", "failed", 2, {}, {"main": 1}, {"main": 1}, "", "", 30,
                     task="restart agent", error="Could not find service agent", log=str(log))
    assert r.failure is FailureKind.EXIT and (r.task, r.error) == ("restart agent",
                                                                  "Could not find service agent")
    assert r.describe() == r.detail == (f'task "restart agent" failed: Could not find service '
                                        f"agent (log: {display_path(log)})")
    timed = _host_result("main", "timeout", None, {}, {}, {}, "", "", 30, task="wait", log="x")
    assert timed.detail.startswith('timed out after 30s during task "wait"')
    lost = _host_result("main", "failed", 4, {"main": 1}, {}, {"main": 1}, "ssh: refused", "",
                        30, task="ping")
    assert lost.failure is FailureKind.UNREACHABLE and "ssh: refused" in lost.detail


def test_command_failure_names_command_exit_last_line_and_a_log_that_exists(
        tmp_path: Path) -> None:
    req = CommandRequest(host=Host("here", {"ansible_connection": "local"}),
                         command="echo working; echo 'permission denied: /etc/x' >&2; exit 7",
                         artifacts_dir=tmp_path / "runs" / "r1" / "step")
    r = LocalCommandRunner().run_command(req, CancelToken())
    assert (r.ok, r.exit_code, r.failure) == (False, 7, FailureKind.EXIT)
    assert r.task == req.command and r.error == "permission denied: /etc/x"
    assert "exited 7: permission denied: /etc/x" in r.detail and r.detail == r.describe()
    log = Path(r.log)
    assert log.is_file() and str(log) in r.detail or display_path(log) in r.detail
    text = log.read_text()
    assert "working" in text and "permission denied" in text and "exit 7" in text


def test_describe_failure_is_one_line() -> None:
    line = describe_failure('task "x" failed', error="line one\n  line two", log="/nowhere/log")
    assert line == 'task "x" failed: line one line two (log: /nowhere/log)'
    assert Result.failed("h", FailureKind.EXIT, "exit 1").detail == "exit 1"  # older callers
