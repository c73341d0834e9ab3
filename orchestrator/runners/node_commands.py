"""What an execution node runs for us: POSIX shell, since nothing of ours is installed there.

Each command is a `/bin/sh` script the controller sends over its SSH connection to the
node. Every process of one job carries `MIGRATE_EXECUTION_JOB=TOKEN` in its environment
(the worker, ansible-playbook, its forks, the modules and what they start), which is how
a job is found and stopped: process groups are not enough, since ansible-runner puts
ansible-playbook in a session of its own and ansible-core's task workers call setsid().

A job stops itself when its controller goes silent. Why: a node whose link is cut, or
whose controller dies without closing the connection, would otherwise go on running the
step to its end (its sshd hears nothing), while the controller has already counted the
node's hosts lost and rolled the others back; `migrate rollback --host H` on the node's
return would then race the step it undoes. So the controller sends a byte every
`ssh.keepalive` seconds after the job, and a watchdog beside the worker kills the job
(as `kill_command` does) when no byte came for `alone_after` seconds or the connection
closed; once the controller has the job's whole stream it sends `DONE` and the watchdog
ends without a kill. The node needs coreutils' `timeout` and `head`, as every Linux has.
"""

from __future__ import annotations

import math
import re
import shlex

from orchestrator.core.model import ExecutionNode, SshSettings

#: the oldest ansible-runner whose worker speaks the protocol as we use it (`worker
#: --delete`, artifacts streamed back); transmit/worker/process came in 2.0
MIN_RUNNER_VERSION = (2, 1)
#: the environment variable that marks every process of one job on the node
TOKEN_VAR = "MIGRATE_EXECUTION_JOB"
#: the byte the controller sends while it is there (anything but a newline, which `$(...)`
#: would strip)
HEARTBEAT = b"."
#: the byte it sends when it has the job's whole stream: the watchdog ends without a kill,
#: and the worker finishes on its own (removing its directory, `--delete`)
DONE = b"!"
#: seconds a node waits for the job's stream itself before giving up on it
STREAM_WAIT = 600
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def job_dir(token: str) -> str:
    """The worker's private data directory on the node (deleted when the job ends); the
    job's stream is kept beside it, in the same name with `.in`, while the worker runs."""
    return f'"${{TMPDIR:-/tmp}}/migrate-job-{token}"'


def job_stream(token: str) -> str:
    """The job's stream on the node, as the worker reads it."""
    return f'"${{TMPDIR:-/tmp}}/migrate-job-{token}.in"'


def path_prefix(node: ExecutionNode) -> str:
    """`PATH=DIR:"$PATH" ` for a runner given by its path, else nothing."""
    folder = node.runner_dir
    return f'PATH={shlex.quote(folder)}:"$PATH" ' if folder else ""


def alone_after(ssh: SshSettings) -> int:
    """Whole seconds without a heartbeat after which the node stops the job: the
    controller's own bound for a silent peer, plus two heartbeats' worth of slack, so that
    a controller that is merely slow is never taken for gone."""
    return max(2, math.ceil(ssh.lost_after + 2 * ssh.keepalive))


def _find(token: str) -> str:
    return f"grep -lsxzF {TOKEN_VAR}={token} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3"


def kill_command(token: str) -> str:
    """SIGKILL every process of the job (by the token in its environment) until none is
    left, remove the job's directory and stream; exit 0 when nothing of the job runs any
    more. The shell that runs this must not carry the token itself."""
    return (f"i=0; while [ $i -lt 20 ]; do p=$({_find(token)}); [ -z \"$p\" ] && break; "
            f"kill -KILL $p 2>/dev/null; sleep 0.1; i=$((i+1)); done; "
            f"rm -rf {job_dir(token)} {job_stream(token)}; [ -z \"$({_find(token)})\" ]")


def sweep_command() -> str:
    """Remove what jobs left that no process runs any more (a node rebooted or killed
    mid-job): their directories and streams. A job still running keeps its own; another
    user's cannot be removed and is left alone."""
    return (f'for s in "${{TMPDIR:-/tmp}}"/migrate-job-*; do [ -e "$s" ] || continue; '
            't=${s##*/migrate-job-}; t=${t%.in}; '
            f'grep -qsxzF "{TOKEN_VAR}=$t" /proc/[0-9]*/environ 2>/dev/null '
            '|| rm -rf "$s"; done')


def worker_command(node: ExecutionNode, token: str, size: int, ssh: SshSettings) -> str:
    """What the node runs for one job: the `size` bytes of the job's stream are read from
    stdin into a file, the worker runs it with its events streaming on stdout, and a
    watchdog (without the token) reads the controller's heartbeats from the same stdin
    and kills the job when they stop or the connection closes before `DONE` came. Exits
    with the worker's status (127: the runner is not there)."""
    stream = job_stream(token)
    # the kill, once begun, must not be stopped by the worker's end (the main shell stops
    # the watchdog with SIGTERM when the worker exits, as it does when the kill got it)
    beat, done = HEARTBEAT.decode(), DONE.decode()
    watchdog = (f"while b=$(timeout {alone_after(ssh)} head -c 1) && [ \"$b\" = '{beat}' ]; "
                f"do :; done; [ \"$b\" = '{done}' ] && exit 0; "
                f"trap '' TERM; {kill_command(token)}")
    script = (
        f"{sweep_command()}; "
        f"(umask 077; exec timeout {STREAM_WAIT} head -c {size} > {stream}) && "
        f"[ $(($(wc -c < {stream}))) -eq {size} ] || "
        f"{{ rm -f {stream}; echo 'the job did not arrive whole' >&2; exit 12; }}; "
        f"{path_prefix(node)}{shlex.quote(node.runner)} worker --private-data-dir "
        f"{job_dir(token)} --delete < {stream} & w=$!; exec 3<&0; "
        f"env -u {TOKEN_VAR} /bin/sh -c {shlex.quote(watchdog)} <&3 >/dev/null 2>&1 & g=$!; "
        f"exec 3<&-; wait $w; rc=$?; kill $g 2>/dev/null; rm -rf {job_dir(token)} {stream}; "
        "exit $rc")
    # the shell itself carries the token from its start, so that no moment of the job
    # (its stream written, the worker not yet started) looks dead to another job's sweep
    return f"exec env {TOKEN_VAR}={token} /bin/sh -c " + shlex.quote(script)


def check_command(node: ExecutionNode) -> str:
    """Preflight on the node: the runner's version, an ansible-playbook beside it, and the
    coreutils a job's watchdog uses, tried as it uses them (without a working `timeout N`,
    as BusyBox before 1.30 has, it would kill every job at once)."""
    runner = shlex.quote(node.runner)
    folder = node.runner_dir
    path = f'PATH={shlex.quote(folder)}:"$PATH"; export PATH; ' if folder else ""
    return (f"{path}v=$({runner} --version 2>&1) || {{ echo \"$v\"; exit 10; }}; "
            f"echo \"runner $v\"; command -v ansible-playbook >/dev/null || exit 11; "
            f"[ \"$(printf ab | timeout 5 head -c 1)\" = a ] || exit 13")


def parse_version(text: str) -> tuple[int, ...] | None:
    found = _VERSION.search(text)
    return tuple(int(g) for g in found.groups() if g is not None) if found else None
