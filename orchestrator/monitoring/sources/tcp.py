"""`tcp`: can a connection be opened? With `from: HOST`, asked on that host over SSH, so
that "main can reach pc2" is what is measured, not "the orchestrator can reach pc2"."""

from __future__ import annotations

import shlex
import socket
import tempfile
from pathlib import Path

from orchestrator.config.templating import render
from orchestrator.core.clock import CancelToken
from orchestrator.core.model import Metric
from orchestrator.monitoring.sources.base import ReadContext, Reading, register
from orchestrator.runners.base import CommandRequest

PROBE = ("import socket,sys\n"
         "try:\n"
         " socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"
         ".close()\n"
         "except OSError as e:\n"
         " print(e); sys.exit(1)\n")


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def probe_dir() -> Path:
    return Path(tempfile.gettempdir()) / "migrate-probes"


class TcpSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        address = render(str(metric.config["address"]), ctx.template_context())
        try:
            host, port = split_address(address)
        except ValueError as exc:
            return Reading.passed(False, str(exc))
        origin_name = metric.config.get("from")
        origin = ctx.hosts.get(str(origin_name)) if origin_name else None
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


register("tcp", TcpSource())
