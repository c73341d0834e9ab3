"""`nvml`: the host's GPU through NVML (nvidia-ml-py's `pynvml` module).

In-process when the host's connection is local, otherwise a small Python probe run
by the host's own `python3` over SSH. A host without NVML (no driver, no GPU, no
nvidia-ml-py) raises `NvmlUnavailableError` with one clear line: that is a
configuration problem found at validate/plan time, not a sample.

`xid_errors` counts Xid critical-error events seen since watching started: NVML keeps
no Xid history and only queues events for an event set registered before they happen,
so the count is a counter from the first read, which is what the `increase:` condition
needs. In-process, one event set per GPU lives as long as this process and is drained
on every read. On a remote host a one-shot probe could not do that (a set registered at
each poll has seen nothing yet), so the first read starts a small watcher there
(`XID_WATCHER`, detached in a session of its own): it registers once, waits on the set
with a 1 s timeout, and keeps the count in a file in a private (0700) per-user directory
on the host; later probes only read the file. A `flock` on a lock file lets one watcher
run per GPU and user; the watcher ends when no probe has asked for 10 minutes.
"""

from __future__ import annotations

import shlex
import threading
from typing import Any

from orchestrator._exceptions import NvmlUnavailableError
from orchestrator.config.inventory import Host
from orchestrator.config.templating import render
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import (
    Key,
    ReadContext,
    Reading,
    Report,
    SourceSpec,
    index,
    kind_is,
    one_of,
    text,
)
from orchestrator.metrics.sources.nvml_events import NVML_GONE
from orchestrator.metrics.sources.tcp import probe_dir
from orchestrator.runners.base import CommandRequest, CommandRunner

MIB = 1024 * 1024
NVML_MISSING_EXIT = 3

#: The probe run on a remote host; prints one number, or exits 3 when NVML is missing.
REMOTE_PROBE = r"""
import sys
field, gpu, pid_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    import pynvml as n
    n.nvmlInit()
except Exception as e:
    print("NVML unavailable: %s" % e); sys.exit(3)
h = n.nvmlDeviceGetHandleByIndex(gpu)
if field == "check":
    print(0)
elif field in ("memory_used_mib", "memory_used_pct"):
    m = n.nvmlDeviceGetMemoryInfo(h)
    print(m.used / 1048576.0 if field == "memory_used_mib" else 100.0 * m.used / m.total)
elif field == "utilization_pct":
    print(n.nvmlDeviceGetUtilizationRates(h).gpu)
elif field == "process_memory_mib":
    pid = int(open(pid_file).read().split()[0])
    print(sum((p.usedGpuMemory or 0) for p in n.nvmlDeviceGetComputeRunningProcesses(h)
              if p.pid == pid) / 1048576.0)
elif field == "xid_errors":
    import fcntl, os, stat, subprocess, tempfile
    d = os.path.join(tempfile.gettempdir(), "migrate-%d" % os.getuid())
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        print("refusing %s: not a private directory of this user" % d); sys.exit(1)
    base = os.path.join(d, "xid-%d" % gpu)
    fd = os.open(base + ".asked", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.utime(fd); os.close(fd)
    lock = os.open(base + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            with open(base + ".count") as f:
                print(int(f.read().strip() or 0))
        except (OSError, ValueError):
            print(0)
        sys.exit(0)
    with open(base + ".count.tmp", "w") as f:
        f.write("0")
    os.replace(base + ".count.tmp", base + ".count")
    subprocess.Popen([sys.executable, "-c", XID_WATCHER, str(gpu), base], pass_fds=(lock,),
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    print(0)
"""

#: The long-lived waiter the remote `xid_errors` probe starts; holds the lock it inherits.
XID_WATCHER = r"""
import os, sys, time
gpu, base = int(sys.argv[1]), sys.argv[2]
IDLE = 600
with open(base + ".pid", "w") as f:
    f.write(str(os.getpid()))
import pynvml as n
n.nvmlInit()
s = n.nvmlEventSetCreate()
n.nvmlDeviceRegisterEvents(n.nvmlDeviceGetHandleByIndex(gpu), n.nvmlEventTypeXidCriticalError, s)
count, errors = 0, 0
while errors < 60:
    try:
        n.nvmlEventSetWait(s, 1000)
        count += 1
        with open(base + ".count.tmp", "w") as f:
            f.write(str(count))
        os.replace(base + ".count.tmp", base + ".count")
    except n.NVMLError as e:
        if getattr(e, "value", None) != getattr(n, "NVML_ERROR_TIMEOUT", 10):
            errors += 1
            time.sleep(1)
    try:
        if time.time() - os.stat(base + ".asked").st_mtime > IDLE:
            break
    except OSError:
        break
"""

REMOTE_PROBE = REMOTE_PROBE.replace("XID_WATCHER", repr(XID_WATCHER))


class NvmlBackend:
    """In-process NVML; the `pynvml` module is injectable so tests pass a fake of it."""

    def __init__(self, module: Any = None) -> None:
        self._module = module
        self._ready = False
        self._lock = threading.Lock()
        self._xid: dict[int, tuple[Any, int]] = {}  # gpu -> (event set, count)

    def _nvml(self, host: str) -> Any:
        with self._lock:
            if self._module is None:
                try:
                    import pynvml
                except ImportError as exc:
                    raise NvmlUnavailableError(
                        f"{host}: nvidia-ml-py (pynvml) is not installed") from exc
                self._module = pynvml
            if not self._ready:
                try:
                    self._module.nvmlInit()
                except self._module.NVMLError as exc:
                    raise NvmlUnavailableError(
                        f"{host}: NVML is not available ({exc}): no NVIDIA driver or GPU "
                        "here; use an exporter/prometheus metric, or run on a GPU host"
                    ) from exc
                self._ready = True
            return self._module

    def read(self, host: str, field: str, gpu: int, pid_file: str | None) -> float:
        n = self._nvml(host)
        try:
            return self._read(n, field, gpu, pid_file)
        except n.NVMLError as exc:
            if getattr(exc, "value", None) not in NVML_GONE:
                raise  # one call failing: the caller's "no data"
            with self._lock:
                self._ready = False  # a later read initializes it again, if it came back
            raise NvmlUnavailableError(
                f"{host}: NVML went away ({exc}): the driver or library is gone") from exc

    def _read(self, n: Any, field: str, gpu: int, pid_file: str | None) -> float:
        h = n.nvmlDeviceGetHandleByIndex(gpu)
        if field == "memory_used_mib":
            return float(n.nvmlDeviceGetMemoryInfo(h).used) / MIB
        if field == "memory_used_pct":
            mem = n.nvmlDeviceGetMemoryInfo(h)
            return 100.0 * float(mem.used) / float(mem.total)
        if field == "utilization_pct":
            return float(n.nvmlDeviceGetUtilizationRates(h).gpu)
        if field == "process_memory_mib":
            assert pid_file is not None
            with open(pid_file, encoding="ascii") as fh:
                pid = int(fh.read().split()[0])
            used = sum((p.usedGpuMemory or 0) for p in n.nvmlDeviceGetComputeRunningProcesses(h)
                       if p.pid == pid)
            return float(used) / MIB
        if field == "xid_errors":
            return float(self._drain_xid(n, h, gpu))
        raise ValueError(f"unknown nvml field {field!r}")

    def _drain_xid(self, n: Any, handle: Any, gpu: int) -> int:
        with self._lock:
            if gpu not in self._xid:
                events = n.nvmlEventSetCreate()
                n.nvmlDeviceRegisterEvents(handle, n.nvmlEventTypeXidCriticalError, events)
                self._xid[gpu] = (events, 0)
            events, count = self._xid[gpu]
            while True:
                try:
                    n.nvmlEventSetWait(events, 0)
                except n.NVMLError:
                    break
                count += 1
            self._xid[gpu] = (events, count)
            return count


BACKEND = NvmlBackend()


def _remote(host: Host, commands: CommandRunner, field: str, gpu: int, pid_file: str,
            timeout: float) -> tuple[bool, str, int | None]:
    command = " ".join(["python3", "-c", shlex.quote(REMOTE_PROBE), shlex.quote(field),
                        str(gpu), shlex.quote(pid_file or "-")])
    result = commands.run_command(CommandRequest(host=host, command=command,
                                                 artifacts_dir=probe_dir(), timeout=timeout),
                                  CancelToken())
    return result.ok, (result.stdout or result.detail).strip(), result.exit_code


class NvmlSource:
    def __init__(self, backend: NvmlBackend = BACKEND) -> None:
        self.backend = backend

    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        field = str(metric.config["field"])
        gpu = int(metric.config.get("gpu", 0))
        pid_file = render(str(metric.config["pid_file"]), ctx.template_context()) \
            if "pid_file" in metric.config else None
        if ctx.host.is_local:
            try:
                return Reading(self.backend.read(ctx.host.name, field, gpu, pid_file))
            except NvmlUnavailableError:
                raise
            except Exception as exc:  # NVMLError of one call, unreadable pid file
                return Reading(None, f"nvml {field} on {ctx.host.name}: {exc}")
        if ctx.commands is None:
            return Reading(None, "no command runner for a remote NVML probe")
        ok, out, code = _remote(ctx.host, ctx.commands, field, gpu, pid_file or "",
                                ctx.timeout + 5)
        if code == NVML_MISSING_EXIT:
            raise NvmlUnavailableError(f"{ctx.host.name}: {out.splitlines()[-1] if out else ''}")
        if not ok:
            return Reading(None, f"nvml probe on {ctx.host.name}: {out[-200:]}")
        try:
            return Reading(float(out.split()[-1]))
        except (ValueError, IndexError):
            return Reading(None, f"nvml probe on {ctx.host.name} printed {out[-100:]!r}")


def nvml_available(host: Host, commands: CommandRunner | None,
                   backend: NvmlBackend = BACKEND) -> str | None:
    """None when NVML answers on the host, else the one-line reason it does not."""
    try:
        if host.is_local:
            backend.read(host.name, "memory_used_mib", 0, None)
            return None
        if commands is None:
            return f"{host.name}: no way to reach the host"
        ok, out, code = _remote(host, commands, "check", 0, "", 30)
    except NvmlUnavailableError as exc:
        return str(exc)
    except Exception as exc:  # a GPU index that does not exist, a driver error
        return f"{host.name}: NVML error: {exc}"
    if ok:
        return None
    if code == NVML_MISSING_EXIT:
        return f"{host.name}: {out.splitlines()[-1] if out else 'NVML unavailable'}"
    return f"{host.name}: NVML probe failed: {out[-200:]}"


FIELDS = ("memory_used_mib", "memory_used_pct", "utilization_pct", "xid_errors",
          "process_memory_mib")


def _needs_pid_file(body: Any, report: Report) -> None:
    if body.get("field") == "process_memory_mib" and "pid_file" not in body:
        report(body.line, "process_memory_mib needs pid_file")


SPEC = SourceSpec(
    name="nvml",
    summary="the host's GPU through NVML: in-process when local, over SSH otherwise",
    keys={"field": Key(one_of(*FIELDS), required=True, doc="what to read"),
          "gpu": Key(index, doc="GPU index, default 0"),
          "pid_file": Key(text, doc="process_memory_mib: the process's pid file")},
    kind=kind_is(MetricKind.NUMBER),
    reader=NvmlSource(),
    rules=_needs_pid_file,
)
