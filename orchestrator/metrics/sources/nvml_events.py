"""Xid critical errors as events: a background waiter on `nvmlEventSetWait`.

Polling `xid_errors` sees a GPU fault one poll interval late at best. NVML can block
until the driver reports an Xid, so a waiter per host does that and calls `on_event`
the moment one arrives; the trigger monitor then folds `gpu_operation_failure` at once
instead of at its next poll.

- Local hosts (`ansible_connection: local`): a thread in this process registers an
  event set for the GPUs and waits on it in slices of `wait_ms` (so `close()` returns
  promptly); NVML's wait returns as soon as an event is queued.
- Remote hosts: one long-lived probe over the host's CommandRunner (SSH), which does
  the same on the host and prints one line per event (`xid GPU XID`), `ready` once
  registered and `alive` every few seconds. The probe exits when its SSH session goes
  (its parent changes or stdout breaks); the waiter restarts it with a backoff.

`count(gpu)` is the number of Xid events seen since the waiter started, a counter that
`increase: 0` fires on (NVML keeps no Xid history). The event sets here are separate
from the one `nvml.py` drains for `xid_errors` reads: NVML delivers every event to
every registered set.

A host without NVML stays a clear `NvmlUnavailableError` from `start()`, with the same
wording as the `nvml` source, never a dead thread.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator._exceptions import NvmlUnavailableError
from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.core.supervision import spawn
from orchestrator.metrics.sources.tcp import probe_dir
from orchestrator.runners.base import CommandRequest, CommandRunner

NVML_MISSING_EXIT = 3
#: pynvml error values that say NVML itself is gone, not that one call failed (the `nvml`
#: source's reads and the Xid waiter): UNINITIALIZED, DRIVER_NOT_LOADED,
#: LIBRARY_NOT_FOUND, FUNCTION_NOT_FOUND
NVML_GONE = frozenset({1, 9, 12, 13})
PROBE_KEEP_LINES = 20  # of the probe's output, for the reason it ended
NVML_ERROR_TIMEOUT = 10  # pynvml.NVML_ERROR_TIMEOUT
XID_CRITICAL = 0x8  # pynvml.nvmlEventTypeXidCriticalError

#: Runs on a remote host: waits for Xid events and prints one line per event.
XID_PROBE = r"""
import os, sys, time
gpus = [int(g) for g in sys.argv[1].split(",") if g != ""]
wait_ms = int(sys.argv[2])
try:
    import pynvml as n
    n.nvmlInit()
except Exception as e:
    print("NVML unavailable: %s" % e, flush=True); sys.exit(3)
if not gpus:
    gpus = list(range(n.nvmlDeviceGetCount()))
s = n.nvmlEventSetCreate()
for g in gpus:
    n.nvmlDeviceRegisterEvents(n.nvmlDeviceGetHandleByIndex(g),
                               getattr(n, "nvmlEventTypeXidCriticalError", 8), s)
print("ready %s" % ",".join(map(str, gpus)), flush=True)
parent, last = os.getppid(), time.monotonic()
timeout_code = getattr(n, "NVML_ERROR_TIMEOUT", 10)
while True:
    d = None
    try:
        d = n.nvmlEventSetWait(s, wait_ms)
    except n.NVMLError as e:
        if getattr(e, "value", timeout_code) != timeout_code:
            print("error %s" % e, flush=True); time.sleep(1)
    if d is not None:
        g = gpus[0] if len(gpus) == 1 else n.nvmlDeviceGetIndex(d.device)
        print("xid %d %d" % (g, int(getattr(d, "eventData", d))), flush=True)
    if time.monotonic() - last >= 5:
        print("alive", flush=True); last = time.monotonic()
    if os.getppid() != parent:
        sys.exit(0)
"""


@dataclass(frozen=True)
class XidEvent:
    host: str
    gpu: int
    xid: int  # the Xid number (79: GPU has fallen off the bus, 48: double-bit ECC, ...)
    at: float  # time.monotonic() when the waiter saw it
    count: int  # Xid events on this GPU since the waiter started, this one included

    def describe(self) -> str:
        return f"Xid {self.xid} on GPU {self.gpu} of {self.host}"


EventCallback = Callable[[XidEvent], None]


def _ignore(line: str) -> None:
    return None


def load_nvml(host: str, module: Any = None) -> Any:
    """pynvml, initialised; NvmlUnavailableError (same words as the nvml source) if not."""
    if module is None:
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlUnavailableError(f"{host}: nvidia-ml-py (pynvml) is not installed") \
                from exc
        module = pynvml
    try:
        module.nvmlInit()
    except module.NVMLError as exc:
        raise NvmlUnavailableError(
            f"{host}: NVML is not available ({exc}): no NVIDIA driver or GPU here; use an "
            "exporter/prometheus metric, or run on a GPU host") from exc
    return module


class XidWaiter:
    """Waits for Xid critical errors on one host's GPUs and calls `on_event` at once.

    `gpus` None means every GPU of the host. Owners call `start()` (raises
    NvmlUnavailableError when the host has no NVML) and `close()`, or use `with`.
    """

    def __init__(self, host: Host, on_event: EventCallback, *,
                 gpus: Iterable[int] | None = (0,), commands: CommandRunner | None = None,
                 module: Any = None, log: Callable[[str], None] = _ignore,
                 wait_ms: int = 250, python: str = "python3",
                 ready_timeout: float = 30.0) -> None:
        self.host = host
        self.on_event = on_event
        self.gpus = tuple(gpus) if gpus is not None else ()
        self.commands = commands
        self.module = module
        self.log = log
        self.wait_ms = wait_ms
        self.python = python
        self.ready_timeout = ready_timeout
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cancel = CancelToken()
        self._ready = threading.Event()
        self._exit: tuple[int | None, str] | None = None
        self.events: list[XidEvent] = []

    # --- public -----------------------------------------------------------------------
    def count(self, gpu: int = 0) -> int:
        with self._lock:
            return self._counts.get(gpu, 0)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        if self.host.is_local:
            nvml = load_nvml(self.host.name, self.module)
            try:
                events = self._register(nvml)
            except BaseException:
                nvml.nvmlShutdown()
                raise
            self._thread = spawn(f"xid-{self.host.name}", self._wait_local, nvml, events)
            return
        if self.commands is None:
            raise NvmlUnavailableError(f"{self.host.name}: no way to reach the host for the "
                                       "NVML event probe")
        self._thread = spawn(f"xid-{self.host.name}", self._run_remote)
        deadline = time.monotonic() + self.ready_timeout
        while not self._ready.wait(0.05):
            if self._exit is not None:
                code, out = self._exit
                self.close()
                if code == NVML_MISSING_EXIT:
                    raise NvmlUnavailableError(f"{self.host.name}: {out}")
                raise NvmlUnavailableError(f"{self.host.name}: NVML event probe failed: {out}")
            if time.monotonic() > deadline:
                self.close()
                raise NvmlUnavailableError(f"{self.host.name}: NVML event probe not ready "
                                           f"after {self.ready_timeout:g}s")

    def close(self) -> None:
        self._stop.set()
        self._cancel.cancel("xid waiter closed")
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.wait_ms / 1000 + 5)

    def __enter__(self) -> XidWaiter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- shared -----------------------------------------------------------------------
    def _seen(self, gpu: int, xid: int) -> None:
        with self._lock:
            count = self._counts.get(gpu, 0) + 1
            self._counts[gpu] = count
            event = XidEvent(self.host.name, gpu, xid, time.monotonic(), count)
            self.events.append(event)
        try:
            self.on_event(event)
        except Exception as exc:  # the callback's bug must not stop the waiter
            self.log(f"xid: callback failed for {event.describe()}: "
                     f"{type(exc).__name__}: {exc}")

    # --- in-process -------------------------------------------------------------------
    def _register(self, nvml: Any) -> Any:
        gpus = self.gpus or tuple(range(int(nvml.nvmlDeviceGetCount())))
        self.gpus = gpus
        events = nvml.nvmlEventSetCreate()
        kind = getattr(nvml, "nvmlEventTypeXidCriticalError", XID_CRITICAL)
        for gpu in gpus:
            try:
                nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(gpu), kind, events)
            except nvml.NVMLError as exc:
                raise NvmlUnavailableError(f"{self.host.name}: GPU {gpu} cannot report Xid "
                                           f"events through NVML ({exc})") from exc
        return events

    def _wait_local(self, nvml: Any, events: Any) -> None:
        timeout_code = getattr(nvml, "NVML_ERROR_TIMEOUT", NVML_ERROR_TIMEOUT)
        try:
            while not self._stop.is_set():
                try:
                    data = nvml.nvmlEventSetWait(events, self.wait_ms)
                except nvml.NVMLError as exc:
                    if getattr(exc, "value", None) in NVML_GONE:  # a death, supervised
                        raise NvmlUnavailableError(f"{self.host.name}: NVML went away "
                                                   f"({exc}): no Xid events any more") from exc
                    if getattr(exc, "value", timeout_code) != timeout_code:
                        self.log(f"xid: NVML wait on {self.host.name} failed: {exc}")
                        self._stop.wait(1.0)
                    continue
                gpu = self.gpus[0]
                if len(self.gpus) > 1 and hasattr(data, "device"):
                    gpu = int(nvml.nvmlDeviceGetIndex(data.device))
                self._seen(gpu, int(getattr(data, "eventData", data)))
        finally:
            for call in (lambda: nvml.nvmlEventSetFree(events), nvml.nvmlShutdown):
                try:
                    call()
                except Exception:  # noqa: S110 - freeing on the way out; nothing to tell
                    pass

    # --- remote -----------------------------------------------------------------------
    def probe_command(self) -> str:
        return " ".join([self.python, "-u", "-c", shlex.quote(XID_PROBE),
                         shlex.quote(",".join(map(str, self.gpus))), str(self.wait_ms)])

    def _line(self, host: str, line: str) -> None:
        words = line.split()
        if not words:
            return
        if words[0] == "ready":
            self._ready.set()
        elif words[0] == "xid" and len(words) == 3:
            try:
                self._seen(int(words[1]), int(words[2]))
            except ValueError:
                self.log(f"xid: probe on {host} printed {line!r}")
        elif words[0] == "error":
            self.log(f"xid: NVML on {host}: {line[6:]}")

    def _run_remote(self) -> None:
        assert self.commands is not None
        backoff = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            # `alive` every few seconds for hours: only the last lines are kept
            request = CommandRequest(host=self.host, command=self.probe_command(),
                                     artifacts_dir=probe_dir(), timeout=None,
                                     on_output=self._line, keep_lines=PROBE_KEEP_LINES)
            result = self.commands.run_command(request, self._cancel)
            if self._stop.is_set():
                return
            out = (result.stdout or result.detail).strip().splitlines()
            last = out[-1] if out else result.detail
            if not self._ready.is_set():  # never got going: start() reports it and stops
                self._exit = (result.exit_code, last)
                return
            self.log(f"xid: NVML event probe on {self.host.name} ended ({last}); "
                     f"restarting in {backoff:g}s")
            if time.monotonic() - started > 60:
                backoff = 1.0
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 30.0)


class XidWatch:
    """One `XidWaiter` per host, started and closed together."""

    def __init__(self, hosts: Iterable[Host], on_event: EventCallback, *,
                 gpus: Mapping[str, Iterable[int]] | None = None,
                 commands: CommandRunner | None = None, module: Any = None,
                 log: Callable[[str], None] = _ignore) -> None:
        self.waiters = {h.name: XidWaiter(h, on_event, gpus=(gpus or {}).get(h.name, (0,)),
                                          commands=commands, module=module, log=log)
                        for h in hosts}

    def start(self) -> None:
        started = []
        try:
            for waiter in self.waiters.values():
                waiter.start()
                started.append(waiter)
        except BaseException:
            for waiter in started:
                waiter.close()
            raise

    def close(self) -> None:
        for waiter in self.waiters.values():
            waiter.close()

    def count(self, host: str, gpu: int = 0) -> int:
        return self.waiters[host].count(gpu)

    def __enter__(self) -> XidWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
