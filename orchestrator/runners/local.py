"""Commands on a local-connection host: `/bin/sh -c` in its own process group.

The whole group is killed on timeout or cancel, so a step's children die with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from datetime import UTC, datetime

from orchestrator.core.clock import CancelToken
from orchestrator.runners.base import (
    CommandRequest,
    FailureKind,
    Result,
    command_failed,
    last_line,
)


class LocalCommandRunner:
    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result:
        host = request.host.name
        request.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = request.artifacts_dir / f"{host}.log"
        proc = subprocess.Popen(["/bin/sh", "-c", request.command], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, text=True, errors="replace")
        lines: deque[str] = deque(maxlen=request.keep_lines)

        def pump() -> None:
            assert proc.stdout is not None
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"# {_utc()} $ {request.command}\n")
                log.flush()
                for line in proc.stdout:
                    lines.append(line)
                    log.write(line)
                    request.on_output(host, line.rstrip("\n"))

        # not `spawn`ed: it runs on a fan-out pool's thread, which carries no run's
        # context; its death reaches the running run through the app's Supervisor
        # (threading.excepthook), named for its host
        reader = threading.Thread(target=pump, daemon=True, name=f"output-{host}")
        reader.start()
        deadline = time.monotonic() + request.timeout if request.timeout else None
        why = ""
        kind: FailureKind | None = None
        while proc.poll() is None:
            if cancel.cancelled:
                why, kind = f"cancelled: {cancel.reason}", FailureKind.CANCELLED
            elif deadline is not None and time.monotonic() > deadline:
                why, kind = f"timed out after {request.timeout:g}s", FailureKind.TIMEOUT
            if kind is not None:
                _kill_group(proc)
                break
            cancel.wait(0.05)
        proc.wait()
        reader.join(timeout=2)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"# {_utc()} exit {proc.returncode}" + (f" ({why})" if why else "") + "\n")
        out = "".join(lines)
        if kind is not None:
            return Result.failed(host, kind, why, proc.returncode, out, task=request.command,
                                 error=last_line(out), log=log_path)
        if proc.returncode == 0:
            return Result(host, True, "exit 0", 0, out, log=str(log_path))
        return command_failed(host, request.command, proc.returncode, out, log_path)


def _utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
