"""Every run ends (SPEC section 4), the faults of issue 21 not staged in
test_every_run_ends.py: the small leaks (probe output and directory, the report's
journal), NVML lost mid-phase through the fake at the pynvml boundary, a fleet's
`migrate rollback` killed mid-undo. The journal stopped mid-phase and a watcher whose
database session is killed are in test_team_cli.py and test_team_state.py (PostgreSQL).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.metrics.sources import tcp
from orchestrator.metrics.sources.nvml_events import PROBE_KEEP_LINES, XidWaiter
from orchestrator.runners.base import CommandRequest, Result
from orchestrator.runners.local import LocalCommandRunner
from tests.support.fake_runners import Recorder
from tests.support.lifecycles import lifecycle, run
from tests.support.projects import Proj, make_project
from tests.support.state_probes import locks
from tests.support.state_probes import status_of as status

REMOTE = Host("pc2", {"ansible_host": "192.0.2.20"})

TWO_STEPS = """\
phase: 1
name: Two steps
steps:
  - id: a
    command: 'echo do a {{ host }} >> {{ vars.marker_dir }}/order.log'
    rollback_command: 'echo undo a {{ host }} >> {{ vars.marker_dir }}/order.log'
  - id: b
    command: 'echo do b {{ host }} >> {{ vars.marker_dir }}/order.log'
    rollback_command: 'echo undo b {{ host }} >> {{ vars.marker_dir }}/order.log'
"""


def build(tmp_path: Path, migration: str | None = None,
          hosts: tuple[str, ...] = ("main",), body: str = TWO_STEPS) -> Proj:
    proj = make_project(tmp_path, migration, hosts=hosts)
    proj.phase(1, "two", body)
    return proj


def history(proj: Proj) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(
        proj.migrate("--output", "json", "history").stdout)["events"]
    return events


def clean(stderr: str) -> None:
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr


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


# --- the report's journal is closed -----------------------------------------------------------
def test_the_journals_find_run_opens_are_closed_after_the_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.app import App
    from orchestrator.reporting import report
    from orchestrator.state.journal import Journal

    proj = build(tmp_path)
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    run_id = history(proj)[0]["run_id"]
    # a rehearsal's journal that does not hold the run is looked in, then closed too
    other = proj.root / ".migrate" / "rehearsals" / "r-1"
    other.mkdir(parents=True)
    Journal(other / "state.db").close()

    opened: list[Journal] = []
    closed: list[Journal] = []

    class Tracked(Journal):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            opened.append(self)

        def close(self) -> None:
            closed.append(self)
            super().close()

    monkeypatch.setattr(report, "Journal", Tracked)
    with pytest.raises(Exception, match="no run 'nope'"):
        report.find_run([other], "nope")
    assert opened and set(map(id, opened)) == set(map(id, closed))
    with App(proj.root) as app:
        path, _ = app.report(run_id, "md")
        assert path.is_file()
        assert len(opened) >= 2
        assert set(map(id, opened)) <= set(map(id, closed))  # closed before the app is


# --- the sandbox's ansible-playbook call has a timeout ----------------------------------------
def test_a_sandbox_playbook_that_hangs_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    from orchestrator._exceptions import MigrateError
    from orchestrator.rehearsal.sandbox import PROVISION, TEARDOWN, Sandbox

    pid_file = tmp_path / "hang.pid"
    hang = f"""\
- name: a provision that never ends
  hosts: localhost
  gather_facts: false
  tasks:
    - name: hang
      ansible.builtin.shell: "echo $$ > {pid_file}; exec sleep 600"
"""
    for rel in (PROVISION, TEARDOWN):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(hang)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    said: list[str] = []
    box = Sandbox(tmp_path, inventory, said.append, timeout=8)
    started = time.monotonic()
    with pytest.raises(MigrateError, match=r"provision.yml did not finish within 8s"):
        box.provision()
    assert time.monotonic() - started < 30
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid):  # its whole process group was stopped, the task's sleep too
        assert time.monotonic() < deadline, f"sleep {pid} outlived the timeout"
        time.sleep(0.1)
    pid_file.unlink()
    box.teardown()  # a teardown that hangs is said, not raised: the drill goes on
    assert any("teardown.yml did not finish within 8s" in line for line in said), said


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- NVML lost mid-phase, through a fake pynvml on the path of a real `migrate` -----------------
FAKE_PYNVML = '''\
"""A fake pynvml: one GPU with 1000 MiB used, until the file GONE exists: then every call
fails as when the driver is unloaded (NVML_ERROR_LIBRARY_NOT_FOUND)."""
import os
from types import SimpleNamespace

GONE = {gone!r}
NVML_ERROR_TIMEOUT = 10


class NVMLError(Exception):
    def __init__(self, value):
        self.value = value
        super().__init__("NVML error %d: Library Not Found" % value)


def _check():
    if os.path.exists(GONE):
        raise NVMLError(12)


def nvmlInit():
    _check()


def nvmlShutdown():
    pass


def nvmlDeviceGetCount():
    _check()
    return 1


def nvmlDeviceGetHandleByIndex(i):
    _check()
    return "gpu%d" % i


def nvmlDeviceGetMemoryInfo(h):
    _check()
    return SimpleNamespace(used=1000 * 1048576, total=24000 * 1048576)
'''

NVML_MIGRATION = """\
name: gpu
inventory: inventory/hosts.yml
poll_interval: 300ms
metrics:
  vram: {source: nvml, field: memory_used_mib}
triggers:
  vram_high: {metric: vram, above: 20000}
"""

NVML_PHASE = """\
phase: 1
name: Soak on the GPU
steps:
  - id: a
    command: 'touch {{ vars.marker_dir }}/a'
    rollback_command: 'rm -f {{ vars.marker_dir }}/a'
  - id: soak
    wait: {soak}
"""


def nvml_project(tmp_path: Path, soak: str) -> tuple[Proj, Path, dict[str, str]]:
    proj = make_project(tmp_path, NVML_MIGRATION, hosts=("main",))
    proj.phase(1, "gpu", NVML_PHASE.replace("{soak}", soak))
    lib = tmp_path / "fakelib"
    lib.mkdir()
    gone = tmp_path / "nvml-gone"
    (lib / "pynvml.py").write_text(FAKE_PYNVML.format(gone=str(gone)))
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (str(lib), root, os.environ.get("PYTHONPATH", "")) if p)
    return proj, gone, dict(os.environ, PYTHONPATH=path)


def spawn_with(proj: Proj, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "--project", str(proj.root),
                             *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for_event(proj: Proj, kind: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not any(e["kind"] == kind for e in history(proj)):
        assert time.monotonic() < deadline, f"no {kind} event"
        time.sleep(0.2)


def test_nvml_lost_mid_phase_rolls_the_phase_back_naming_it(tmp_path: Path) -> None:
    proj, gone, env = nvml_project(tmp_path, "60s")
    child = spawn_with(proj, env, "phase", "1", "--host", "main")
    try:
        while not (proj.markers / "a").exists():
            assert child.poll() is None, child.communicate()
            time.sleep(0.1)
        time.sleep(1)  # a few polls read the GPU
        gone.write_text("")  # the driver goes away
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 1, err  # a failure that rolled back, never 2, never a hang
    clean(err)
    assert "NVML" in err and "trigger-monitor" in err, err
    assert "nothing ran" not in err
    assert status(proj) == "rolled_back"
    assert not (proj.markers / "a").exists()  # the step that had run was undone
    assert locks(proj) == []


def test_nvml_lost_under_watch_ends_the_watch_and_undoes_nothing(tmp_path: Path) -> None:
    proj, gone, env = nvml_project(tmp_path, "0s")
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(proj.root),
                           "phase", "1", "--host", "main"], capture_output=True, text=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    child = spawn_with(proj, env, "watch", "--host", "main", "--for", "60s")
    try:
        wait_for_event(proj, "watch_started")
        time.sleep(1)
        gone.write_text("")
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 3, err
    clean(err)
    assert "NVML" in err and "nothing was rolled back" in err, err
    assert status(proj) == "completed"  # an hours-old phase is not undone for a dead reader
    assert (proj.markers / "a").exists()
    assert not any(e["kind"] in ("rollback_requested", "rollback_started")
                   for e in history(proj))
    assert locks(proj) == []


# --- a connect in flight is cut by the undo deadline -------------------------------------------
def test_an_ssh_connect_in_flight_is_cut_by_its_token(tmp_path: Path) -> None:
    """paramiko's connect to a host that does not answer cannot be interrupted; the runner
    must not make the undo deadline (or a Ctrl-C) wait for its connect timeout."""
    import threading

    from orchestrator.runners.base import FailureKind, SshSettings
    from orchestrator.runners.ssh import SshCommandRunner

    released = threading.Event()

    def hanging_connect(host: Host, ssh: SshSettings) -> object:
        released.wait(10)  # a connect_timeout of 10 s to a host that is gone
        raise TimeoutError("timed out")

    runner = SshCommandRunner(SshSettings(), connect=hanging_connect)
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel, args=("undo deadline (30s) reached",)).start()
    started = time.monotonic()
    result = runner.run_command(CommandRequest(host=REMOTE, command="true",
                                               artifacts_dir=tmp_path), cancel)
    took = time.monotonic() - started
    released.set()
    assert took < 2, took
    assert result.failure is FailureKind.CANCELLED and not result.ok
    assert "undo deadline" in result.detail and "192.0.2.20" in result.detail
    # cancelled before it starts: no connect at all
    again = runner.run_command(CommandRequest(host=REMOTE, command="true",
                                              artifacts_dir=tmp_path), cancel)
    assert again.failure is FailureKind.CANCELLED
    runner.close()


# --- kill -9 of `migrate rollback` in a fleet, mid-undo ---------------------------------------
FLEET = ("main", "h2", "h3", "h4")  # make_project puts main in a group: always there

FLEET_STEPS = """\
phase: 1
name: Three steps on a fleet
steps:
  - id: a
    command: 'echo do a {{ host }} >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/{{ host }}-a'
    rollback_command: 'echo undo a {{ host }} >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/{{ host }}-a'
  - id: b
    command: 'echo do b {{ host }} >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/{{ host }}-b'
    rollback_command: 'if test -f {{ vars.marker_dir }}/slow-{{ host }}; then echo $$ > {{ vars.marker_dir }}/slow.pid; exec sleep 60; fi; echo undo b {{ host }} >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/{{ host }}-b'
  - id: c
    command: 'echo do c {{ host }} >> {{ vars.marker_dir }}/order.log && touch {{ vars.marker_dir }}/{{ host }}-c'
    rollback_command: 'echo undo c {{ host }} >> {{ vars.marker_dir }}/order.log && rm -f {{ vars.marker_dir }}/{{ host }}-c'
"""


def test_sigkill_of_a_fleet_rollback_mid_undo_then_rollback_again_finishes(
        tmp_path: Path) -> None:
    proj = build(tmp_path, hosts=FLEET, body=FLEET_STEPS)
    done = proj.migrate("phase", "1", "--host", "all")
    assert done.returncode == 0, done.stderr
    (proj.markers / "slow-h3").write_text("")  # h3's undo of b hangs
    child = proj.spawn("rollback", "--host", "all", "--yes")
    pid_file = proj.markers / "slow.pid"
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline and child.poll() is None, child.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # the other hosts' undos of b end meanwhile
        child.kill()
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        if pid_file.exists():  # the undo that ran on, orphaned (its own session)
            try:
                os.kill(int(pid_file.read_text()), 9)
            except (ProcessLookupError, ValueError):
                pass
    assert child.returncode == -9

    # the next command finds the rollback dead: every host interrupted, no lock held
    doc = json.loads(proj.migrate("--output", "json", "status", "--host", "all").stdout)
    states = {h: doc["hosts"][h]["phases"]["1"]["state"] for h in FLEET}
    assert set(states.values()) == {"interrupted"}, states
    assert locks(proj) == []
    assert sorted(line for line in proj.order() if line.startswith("undo c")) == \
        sorted(f"undo c {h}" for h in FLEET)  # c was undone everywhere before the kill
    assert not any(line.startswith("undo a") for line in proj.order())

    (proj.markers / "slow-h3").unlink()
    again = proj.migrate("rollback", "--host", "all", "--yes")
    assert again.returncode == 0, again.stderr
    clean(again.stderr)
    doc = json.loads(proj.migrate("--output", "json", "status", "--host", "all").stdout)
    assert {doc["hosts"][h]["phases"]["1"]["state"] for h in FLEET} == {"rolled_back"}
    assert locks(proj) == []
    left = sorted(p.name for p in proj.markers.iterdir() if p.name[-2:] in ("-a", "-b", "-c"))
    assert left == [], left
    order = proj.order()
    for h in FLEET:  # what was undone before the kill is not undone twice
        assert order.count(f"undo c {h}") == 1, order
        assert order.count(f"undo a {h}") == 1, order
    assert "undo b h3" in order


# --- the undo deadline: no attempt that could only be cut ---------------------------------------
def test_no_undo_attempt_starts_that_could_not_end_before_the_deadline(tmp_path: Path) -> None:
    """A lost host makes each undo attempt take its connect timeout (10 s here) to fail.
    An attempt that, after its backoff, could not end before the deadline is not begun:
    it would only be cut, and the operator would wait for the verdict for nothing."""
    from orchestrator.core.clock import FakeClock
    from orchestrator.core.outcomes import RunOutcome
    from orchestrator.runners.base import FailureKind

    starts: list[float] = []
    clock = FakeClock()

    def on_command(req: CommandRequest, cancel: CancelToken) -> Result:
        if req.command == "do two":
            return Result.failed(req.host.name, FailureKind.EXIT, "exit 1")
        if req.command == "undo one":
            starts.append(clock.monotonic() - before)
            clock.advance(10)  # the connect timeout to a host that is gone
            return Result.failed(req.host.name, FailureKind.UNREACHABLE, "timed out")
        return Result(req.host.name, True, "ok")

    lc, _, _, _ = lifecycle(tmp_path, hosts=("main",), rec=Recorder(answer=on_command),
                            clock=clock, undo_retry_delay=2.0)
    before = clock.monotonic()
    report = run(lc, names=("main",))
    assert report.outcome is RunOutcome.ROLLBACK_FAILED
    # first failure at 10 s: deadline at 40 s. Retries after 2 s and 3 s; the next, after
    # 4.5 s at 39.5 s, would need 10 s more: not begun. The verdict comes at 35 s.
    assert starts == [0, 12, 25], starts
    assert clock.monotonic() - before == 35
    assert report.needs_human == ["main: step one (command: undo one: timed out)"]
