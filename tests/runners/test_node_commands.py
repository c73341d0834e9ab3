"""What an execution node runs (orchestrator/runners/node_commands.py), run here with
/bin/sh, coreutils and /proc as a node has them: the worker fed its job, the watchdog that
kills a job whose controller went silent, the kill by token, the sweep of what dead jobs
left, the runner check. A stand-in `ansible-runner` records how it was started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.core.model import ExecutionNode, SshSettings
from orchestrator.runners.node_commands import (
    DONE,
    HEARTBEAT,
    TOKEN_VAR,
    alone_after,
    check_command,
    kill_command,
    parse_version,
    worker_command,
)

#: the jobs here carry MIGRATE_EXECUTION_JOB as real ones do, and the execution-node tests
#: assert that no process on the machine carries it once their job ended: both run on the
#: one worker of the "netns" group, never at the same time
pytestmark = pytest.mark.xdist_group("netns")

#: a heartbeat every 0.5 s, lost after 2 silent ones: the watchdog waits 2 s
SSH = SshSettings(keepalive=0.5, keepalive_count=2, connect_timeout=3)
JOB = b"the job's stream\n" * 1000
#: the stand-in runner: its private data directory made (as the worker makes it), where it runs from, its arguments and its stdin kept in $OUT, then
#: as told by $THEN ("sleep": a long step; "linger": 2 s of work after its stream ended,
#: as the worker removes its directory; else exit with that status)
RUNNER = """#!/bin/sh
mkdir -p "$3/artifacts"
echo "$PATH" > "$OUT/path"
echo "$@" > "$OUT/args"
cat > "$OUT/job"
echo "streaming events"
[ "$THEN" = sleep ] && exec sleep 3673
[ "$THEN" = linger ] && { sleep 2; touch "$OUT/finished"; exit 0; }
exit "$THEN"
"""


class Node:
    """A job started as the controller starts it: `worker_command` over a pipe."""

    def __init__(self, tmp: Path, then: str, size: int | None = None) -> None:
        self.tmp, self.out = tmp / "tmp", tmp / "out"
        self.tmp.mkdir(exist_ok=True)
        self.out.mkdir(exist_ok=True)
        folder = tmp / "ar bin"
        folder.mkdir(exist_ok=True)
        runner = folder / "ansible-runner"
        runner.write_text(RUNNER)
        runner.chmod(0o755)
        self.token = "j" + os.urandom(6).hex()
        command = worker_command(ExecutionNode("n", "h", str(runner)), self.token,
                                 len(JOB) if size is None else size, SSH)
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, TMPDIR=str(self.tmp), OUT=str(self.out), THEN=then))

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def hang_up(self) -> None:
        """The controller's end of the connection closes."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.stdin = None

    def job_files(self) -> list[str]:
        return sorted(p.name for p in self.tmp.glob(f"migrate-job-{self.token}*"))

    def until_gone(self, within: float) -> float:
        """Seconds until no process carries the job's token (fails after `within`)."""
        t0 = time.monotonic()
        while carrying(self.token):
            assert time.monotonic() - t0 < within, f"the job still runs after {within}s"
            time.sleep(0.1)
        return time.monotonic() - t0

    def until_removed(self, within: float) -> None:
        """Until the job's directory and stream are gone (the kill removes them once no
        process of the job is left)."""
        t0 = time.monotonic()
        while self.job_files():
            assert time.monotonic() - t0 < within, f"left on the node: {self.job_files()}"
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        subprocess.run(["/bin/sh", "-c", kill_command(self.token)],
                       env=dict(os.environ, TMPDIR=str(self.tmp)), timeout=30)
        self.proc.communicate(timeout=10)


#: starts a job: `started(then, size=None)`
Start = Callable[..., Node]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Start]:
    nodes: list[Node] = []

    def start(then: str, size: int | None = None) -> Node:
        nodes.append(Node(tmp_path, then, size))
        return nodes[-1]

    yield start
    for node in nodes:
        node.close()


def test_the_worker_runs_the_whole_stream_with_the_runner_first_on_path(started: Start) -> None:
    node = started("7")
    node.send(JOB)  # the connection stays open until the worker's stream has ended, as the
    assert node.proc.stdout is not None  # controller keeps it
    assert node.proc.stdout.read() == b"streaming events\n"
    assert node.proc.wait(30) == 7  # the worker's own status
    assert (node.out / "job").read_bytes() == JOB
    assert (node.out / "path").read_text().split(":")[0] == str(node.tmp.parent / "ar bin")
    assert (node.out / "args").read_text().split() == [
        "worker", "--private-data-dir", f"{node.tmp}/migrate-job-{node.token}", "--delete"]
    assert node.job_files() == []  # the stream is removed with the job


def test_a_job_whose_controller_goes_silent_is_killed_on_the_node(started: Start) -> None:
    node = started("sleep")
    node.send(JOB)
    for _ in range(8):  # heartbeats for 4 s, twice the watchdog's bound: the job lives
        time.sleep(0.5)
        node.send(HEARTBEAT)
    assert carrying(node.token), "a job whose controller is there was stopped"
    assert node.proc.poll() is None
    silent = time.monotonic()  # heartbeats stop; the connection stays open (a cut link)
    node.until_gone(alone_after(SSH) + 5)
    took = time.monotonic() - silent
    assert took >= alone_after(SSH) - 0.6, f"killed {took:.1f}s after the last heartbeat"
    node.proc.communicate(timeout=10)
    assert node.proc.returncode != 0
    node.until_removed(2)  # its directory and stream


def test_a_closed_connection_stops_the_job_at_once(started: Start) -> None:
    node = started("sleep")
    node.send(JOB)
    time.sleep(1)
    assert carrying(node.token)
    node.hang_up()  # the controller died: its end of the connection closes
    assert node.until_gone(alone_after(SSH) + 5) < 1.5
    node.until_removed(2)


@pytest.mark.parametrize("done", [True, False], ids=["done-said", "hung-up"])
def test_a_job_whose_results_are_in_finishes_on_its_own_once_done_is_said(
        started: Start, done: bool) -> None:
    """The controller closes the channel as soon as the job's stream has ended; the worker
    may still be removing its directory. Said DONE first, the watchdog lets it finish;
    hung up without it, the job is killed as a vanished controller's."""
    node = started("linger")
    node.send(JOB)
    assert node.proc.stdout is not None
    assert node.proc.stdout.readline() == b"streaming events\n"
    if done:
        node.send(DONE)
    node.hang_up()
    node.until_gone(10)
    assert (node.out / "finished").exists() is done
    assert (node.proc.wait(10) == 0) is done


def test_a_missing_runner_exits_127_and_a_short_stream_12(tmp_path: Path, started: Start) -> None:
    node = started("0", size=len(JOB) + 10)  # the stream ends before its size
    node.send(JOB)
    node.hang_up()
    _, err = node.proc.communicate(timeout=30)
    assert node.proc.returncode == 12 and b"did not arrive whole" in err
    assert not (node.out / "args").exists() and node.job_files() == []
    missing = ExecutionNode("n", "h", "/opt/nowhere/bin/ansible-runner")
    done = subprocess.run(["/bin/sh", "-c", worker_command(missing, "m1", len(JOB), SSH)],
                          input=JOB, capture_output=True, timeout=30,
                          env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert done.returncode == 127, done.stderr


def test_a_job_sweeps_what_dead_jobs_left_and_keeps_a_running_ones(tmp_path: Path,
                                                                    started: Start) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    for left in ("migrate-job-dead1", "migrate-job-live1"):
        (tmp / left).mkdir()
        (tmp / left / "artifacts").mkdir()
    (tmp / "migrate-job-dead2.in").write_text("a stream")
    live = subprocess.Popen(["sleep", "3674"], env={**os.environ, TOKEN_VAR: "live1"})
    try:
        node = started("0")
        node.send(JOB + DONE)
        node.proc.communicate(timeout=30)
        assert node.proc.returncode == 0
        assert sorted(p.name for p in tmp.iterdir()) == ["migrate-job-live1"]
    finally:
        live.kill()


def test_the_kill_command_ends_every_process_of_the_job_and_nothing_else(tmp_path: Path) -> None:
    """Processes that carry the token in their environment die, their own sessions and
    grandchildren included (as ansible-playbook's setsid workers); a process with
    another token lives on; the job's directory is removed."""
    token, other = "t" + os.urandom(6).hex(), "o" + os.urandom(6).hex()
    tmp = tmp_path / "tmp"
    (tmp / f"migrate-job-{token}").mkdir(parents=True)
    env = dict(os.environ, TMPDIR=str(tmp))
    job = subprocess.Popen(["sh", "-c", "setsid sh -c 'sleep 3672 & sleep 3672' & sleep 3672"],
                           env={**env, TOKEN_VAR: token}, start_new_session=True)
    bystander = subprocess.Popen(["sleep", "3672"], env={**env, TOKEN_VAR: other})
    try:
        time.sleep(0.5)
        mine = carrying(token)
        assert len(mine) >= 4, mine
        done = subprocess.run(["/bin/sh", "-c", kill_command(token)], env=env, timeout=30)
        assert done.returncode == 0
        assert carrying(token) == []
        assert bystander.poll() is None
        assert not (tmp / f"migrate-job-{token}").exists()
    finally:
        bystander.kill()
        job.kill()


def carrying(token: str) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"{TOKEN_VAR}={token}".encode() in Path(f"/proc/{name}/environ").read_bytes():
                found.append(int(name))
        except OSError:
            continue
    return found


def test_the_runner_check_finds_the_runner_beside_its_ansible_and_coreutils() -> None:
    real = ExecutionNode("n", "h", str(Path(sys.executable).parent / "ansible-runner"))
    clean = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(["/bin/sh", "-c", check_command(real)], capture_output=True,
                          text=True, env=clean)
    assert done.returncode == 0, done.stdout + done.stderr
    version = parse_version(done.stdout)
    assert version is not None and version >= (2, 1)
    missing = ExecutionNode("n", "h", "/opt/nowhere/bin/ansible-runner")
    done = subprocess.run(["/bin/sh", "-c", check_command(missing)], capture_output=True,
                          text=True, env=clean)
    assert done.returncode == 10
    # the runner and its ansible-playbook, but no coreutils on the PATH: the watchdog
    # could not run
    done = subprocess.run(["/bin/sh", "-c", check_command(real)], capture_output=True,
                          text=True, env={"PATH": "/nonexistent"})
    assert done.returncode == 13, done.stdout + done.stderr


def test_versions_are_read_from_the_runners_own_words() -> None:
    assert parse_version("ansible-runner 2.0.4") == (2, 0, 4)
    assert parse_version("2.4.3") == (2, 4, 3)
    assert parse_version("no version") is None
