"""Commands on a remote host over SSH with fabric, with settings from the inventory only.

Host keys are checked against known_hosts (fabric would accept unknown keys;
we refuse them) unless the inventory sets `migrate_ssh_insecure: true` for a lab.
Connections are kept for the life of the runner, one per host.
"""

from __future__ import annotations

import shlex
import threading
from typing import Any

from orchestrator._exceptions import RunnerError
from orchestrator.config.inventory import Host
from orchestrator.core.clock import CancelToken
from orchestrator.runners.base import CommandRequest, Result


def connection_kwargs(host: Host) -> dict[str, Any]:
    """fabric.Connection arguments from ansible_* variables."""
    v = host.vars
    kwargs: dict[str, Any] = {"host": host.address, "connect_timeout": 10}
    if "ansible_port" in v:
        kwargs["port"] = int(v["ansible_port"])
    if "ansible_user" in v:
        kwargs["user"] = str(v["ansible_user"])
    connect: dict[str, Any] = {"allow_agent": False}
    if "ansible_ssh_private_key_file" in v:
        connect["key_filename"] = [str(v["ansible_ssh_private_key_file"])]
    known = _option(v.get("ansible_ssh_common_args", ""), "UserKnownHostsFile")
    if known:
        connect["_known_hosts"] = known
    kwargs["connect_kwargs"] = connect
    return kwargs


def _option(args: str, name: str) -> str | None:
    words = shlex.split(str(args))
    for i, word in enumerate(words):
        if word == "-o" and i + 1 < len(words) and words[i + 1].startswith(f"{name}="):
            return words[i + 1].split("=", 1)[1]
        if word.startswith(f"-o{name}="):
            return word.split("=", 1)[1]
    return None


class SshCommandRunner:
    def __init__(self) -> None:
        self._conns: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _connection(self, host: Host) -> Any:
        with self._lock:
            conn = self._conns.get(host.name)
            if conn is not None:
                return conn
            import paramiko
            from fabric import Config, Connection

            kwargs = connection_kwargs(host)
            known = kwargs["connect_kwargs"].pop("_known_hosts", None)
            conn = Connection(config=Config(overrides={"run": {"hide": True, "warn": True}}),
                              **kwargs)
            client = conn.client
            client.load_system_host_keys()
            if known:
                try:
                    client.load_host_keys(known)
                except OSError as exc:
                    raise RunnerError(f"{host.name}: cannot read known_hosts {known}") from exc
            insecure = bool(host.vars.get("migrate_ssh_insecure"))
            client.set_missing_host_key_policy(
                paramiko.AutoAddPolicy() if insecure else paramiko.RejectPolicy())
            self._conns[host.name] = conn
            return conn

    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result:
        host = request.host.name
        request.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = request.artifacts_dir / f"{host}.log"
        try:
            conn = self._connection(request.host)
            with open(log_path, "a", encoding="utf-8") as log:
                stream = _LineStream(host, request, log)
                res = conn.run(request.command, timeout=request.timeout, out_stream=stream,
                               err_stream=stream, in_stream=False)
        except RunnerError:
            raise
        except Exception as exc:  # paramiko/invoke errors: unreachable, auth, timeout
            name = type(exc).__name__
            if name == "CommandTimedOut":
                return Result(host, False, f"timed out after {request.timeout:g}s")
            return Result(host, False, f"ssh to {request.host.address} failed: {name}: {exc}")
        ok = res.exited == 0
        tail = res.stdout.strip()[-300:]
        detail = f"exit {res.exited}" + (f": {tail}" if tail and not ok else "")
        return Result(host, ok, detail, res.exited, res.stdout)

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()


class _LineStream:
    """A file-like sink for invoke that forwards whole lines to the operator and the log."""

    def __init__(self, host: str, request: CommandRequest, log: Any) -> None:
        self.host, self.request, self.log, self.buf = host, request, log, ""

    def write(self, data: str) -> int:
        self.log.write(data)
        self.buf += data
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self.request.on_output(self.host, line)
        return len(data)

    def flush(self) -> None:
        self.log.flush()


class HostCommandRunner:
    """Local shell for `ansible_connection: local` hosts, SSH for the rest."""

    def __init__(self) -> None:
        from orchestrator.runners.local import LocalCommandRunner

        self.local = LocalCommandRunner()
        self.ssh = SshCommandRunner()

    def run_command(self, request: CommandRequest, cancel: CancelToken) -> Result:
        runner = self.local if request.host.is_local else self.ssh
        return runner.run_command(request, cancel)
