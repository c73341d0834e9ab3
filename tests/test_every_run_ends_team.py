"""Every run ends (SPEC section 4), the faults of issue 21 not staged in
test_every_run_ends.py: the small leaks (probe output and directory, the report's
journal), NVML lost mid-phase through the fake at the pynvml boundary, a fleet's
`migrate rollback` killed mid-undo. The journal stopped mid-phase and a watcher whose
database session is killed are in test_team_cli.py and test_team_state.py (PostgreSQL).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from pathlib import Path

import pytest

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.monitoring.sources import tcp
from orchestrator.monitoring.sources.nvml_events import PROBE_KEEP_LINES, XidWaiter
from orchestrator.runners.base import CommandRequest, Result
from orchestrator.runners.local import LocalCommandRunner

REMOTE = Host("pc2", {"ansible_host": "192.0.2.20"})


# --- the Xid probe: bounded output, a private log directory -----------------------------------
class Spy:
    """A CommandRunner that runs locally and keeps what it was asked and what came back."""

    def __init__(self) -> None:
        self.inner = LocalCommandRunner()
        self.requests: list[CommandRequest] = []
        self.results: list[Result] = []

    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result:
        self.requests.append(request)
        result = self.inner.run_command(request, cancel)
        self.results.append(result)
        return result


def test_the_xid_probe_keeps_only_its_last_lines_in_a_private_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tcp, "_probe_dir", None)
    # a probe that registers, says `alive` 5000 times (hours of a long watch), then ends
    chatty = tmp_path / "chatty.py"
    chatty.write_text("print('ready', flush=True)\n"
                      "for _ in range(5000): print('alive')\n"
                      "print('NVML gone', flush=True)\n")
    spy = Spy()
    lines: list[str] = []
    waiter = XidWaiter(REMOTE, lambda event: None, commands=spy, log=lines.append,
                       python=f"{sys.executable} {chatty}")  # argv ignored
    with waiter:
        deadline = time.monotonic() + 20
        while not spy.results:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    result = spy.results[0]
    kept = result.stdout.splitlines()
    assert len(kept) <= PROBE_KEEP_LINES, len(kept)
    assert kept[-1] == "NVML gone"
    assert any("NVML gone" in line for line in lines)  # the reason it ended is still told
    where = spy.requests[0].artifacts_dir
    assert where.name != "migrate-probes"
    st = os.lstat(where)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert not (tmp_path / "migrate-probes").exists()


def test_a_command_keeps_all_its_output_unless_told_otherwise(tmp_path: Path) -> None:
    host = Host("main", {"ansible_connection": "local"})
    cmd = "for i in $(seq 1 500); do echo line $i; done"
    full = LocalCommandRunner().run_command(
        CommandRequest(host=host, command=cmd, artifacts_dir=tmp_path), CancelToken())
    assert len(full.stdout.splitlines()) == 500
    tail = LocalCommandRunner().run_command(
        CommandRequest(host=host, command=cmd, artifacts_dir=tmp_path, keep_lines=3),
        CancelToken())
    assert tail.stdout.splitlines() == ["line 498", "line 499", "line 500"]
    assert tail.ok
