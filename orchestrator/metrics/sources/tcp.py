"""`tcp`: can a connection be opened? With `from: HOST`, asked on that host over SSH, so
that "main can reach pc2" is what is measured, not "the orchestrator can reach pc2".

The SSH connection is the command runner's (keepalives from `ssh:`), so a `from:` host
that goes silent ends the probe within keepalive x count seconds, not TCP's minutes.

`probe_dir()` is where probes' command logs go: a directory private to this user (0700,
owned by us, not a symlink), never a fixed shared path that another user could own or
fill with symlinks.
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
import tempfile
import threading
from pathlib import Path

from orchestrator.config.templating import render
from orchestrator.core.clock import CancelToken
from orchestrator.core.hostport import split_host_port
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import (
    Key,
    ReadContext,
    Reading,
    SourceSpec,
    kind_is,
    text,
)
from orchestrator.runners.base import CommandRequest

PROBE = ("import socket,sys\n"
         "try:\n"
         " socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"
         ".close()\n"
         "except OSError as e:\n"
         " print(e); sys.exit(1)\n")


def split_address(address: str) -> tuple[str, int]:
    """The host and port to connect to; a host is required (":PORT" is only for listening)."""
    host, port = split_host_port(address)
    if not host:
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host, port


_probe_dir: Path | None = None
_probe_lock = threading.Lock()


def _private(path: Path) -> bool:
    """A real directory (not a symlink) of ours that nobody else may enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() \
        and stat.S_IMODE(st.st_mode) & 0o077 == 0


def probe_dir() -> Path:
    """This user's private directory for probe logs: `$TMPDIR/migrate-probes-UID` (0700),
    or a fresh `mkdtemp` one when that name is taken by something we can't trust."""
    global _probe_dir
    with _probe_lock:
        if _probe_dir is not None and _private(_probe_dir):
            return _probe_dir
        candidate = Path(tempfile.gettempdir()) / f"migrate-probes-{os.getuid()}"
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError:
            candidate = Path(tempfile.mkdtemp(prefix="migrate-probes-"))
        if not _private(candidate):
            candidate = Path(tempfile.mkdtemp(prefix="migrate-probes-"))
        _probe_dir = candidate
        return candidate


class TcpSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        address = render(str(metric.config["address"]), ctx.template_context())
        try:
            host, port = split_address(address)
        except ValueError as exc:
            return Reading.passed(False, str(exc))
        origin_name = metric.config.get("from")
        origin = ctx.origin(origin_name) if origin_name else None
        if origin_name and origin is None:
            return Reading.passed(False, f"from: unknown host {origin_name!r}")
        if origin is None or origin.is_local:
            try:
                socket.create_connection((host, port), timeout=ctx.timeout).close()
                return Reading.passed(True)
            except OSError as exc:
                return Reading.passed(False, f"connect {address}: {exc}")
        if ctx.commands is None:
            return Reading.passed(False, "no command runner for a remote probe")
        connect_timeout = max(0.1, ctx.timeout * 0.7)
        command = " ".join(["python3", "-c", shlex.quote(PROBE), shlex.quote(host), str(port),
                            f"{connect_timeout:.2f}"])
        result = ctx.commands.run_command(
            CommandRequest(host=origin, command=command, artifacts_dir=probe_dir(),
                           timeout=ctx.timeout + 5), CancelToken())
        if result.ok:
            return Reading.passed(True)
        return Reading.passed(False, f"connect {address} from {origin.name}: "
                              f"{(result.stdout or result.detail).strip()[-200:]}")


SPEC = SourceSpec(
    name="tcp",
    summary="can a TCP connection be opened (from the orchestrator, or `from:` a host)",
    keys={"address": Key(text, required=True, doc="HOST:PORT (a template)"),
          "from": Key(text, doc="probe from this inventory host, over SSH")},
    kind=kind_is(MetricKind.PASSFAIL),
    reader=TcpSource(),
)
