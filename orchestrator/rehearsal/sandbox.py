"""The sandbox a drill runs in: its hosts' directories, faults, processes and ports.

Every host of a sandbox inventory is on this machine (local connection) with its own
`sandbox_dir`, running the project's stand-in agent, which re-reads its faults file
on every request. This module knows the conventions a sandbox inventory follows
(variables `sandbox_dir`, `faults_file`; playbooks `playbooks/sandbox/provision.yml`
and `teardown.yml`) and asks the real processes for the facts a drill is judged on:
which revision an agent runs, whether a port answers. It knows no host or port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, MigrateError
from orchestrator.config.inventory import Host
from orchestrator.core.events import RunEvent
from orchestrator.rehearsal.scenario import DEFAULT_HEALTH_URL, Injection

PROVISION = "playbooks/sandbox/provision.yml"
TEARDOWN = "playbooks/sandbox/teardown.yml"
FAULTS_NAME = "faults.json"
#: seconds a sandbox playbook (provision, teardown) may run before it is stopped
PLAYBOOK_TIMEOUT = 300.0


def _host_path(host: Host, inventory_path: Path, raw: Any, what: str) -> Path:
    """A path-valued inventory variable, rendered the way Ansible would see it."""
    from orchestrator.config.templating import render

    context = {**host.vars, "inventory_dir": str(inventory_path.parent),
               "inventory_hostname": host.name}
    text = str(raw)
    for _ in range(5):  # inventory variables may refer to each other, as Ansible allows
        if "{{" not in text:
            break
        text = render(text, context)
    if "{{" in text or not Path(text).is_absolute():
        raise ConfigError(f"{inventory_path}: {what} of {host.name} does not resolve to "
                          f"an absolute path: {text!r}")
    return Path(text).resolve()


def sandbox_dir(host: Host, inventory_path: Path, project_root: Path) -> Path:
    """The host's own directory: `sandbox_dir` from the inventory, else one per host name
    under the project's `.migrate/sandbox/`."""
    raw = host.vars.get("sandbox_dir")
    if not raw:
        return project_root / ".migrate" / "sandbox" / host.name
    return _host_path(host, inventory_path, raw, "sandbox_dir")


def faults_file(host: Host, inventory_path: Path, project_root: Path) -> Path:
    """Where the host's stand-in reads its faults: `faults_file`, else in its sandbox dir."""
    raw = host.vars.get("faults_file")
    if not raw:
        return sandbox_dir(host, inventory_path, project_root) / FAULTS_NAME
    return _host_path(host, inventory_path, raw, "faults_file")


def agent_revision(host: Host, url_template: str = DEFAULT_HEALTH_URL) -> str:
    """Ask the running stand-in which revision it runs (its /health says, even on 503)."""
    from orchestrator.config.templating import render

    url = render(url_template, {"host": host.name, "vars": host.vars})
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - sandbox loopback
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError as exc:
        return f"not running ({exc})"
    try:
        return str(json.loads(body).get("revision", "unknown"))
    except (ValueError, AttributeError):
        return "unknown"


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def write_faults(path: Path, faults: dict[str, Any]) -> None:
    """Replace the faults file atomically: the stand-in reads it on every request and must
    never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(faults))
    os.replace(tmp, path)


class FaultInjector:
    """An event hook that writes a fault's file when the run journals its `when` event.

    Faults without `when` are written before provisioning by `Sandbox.fresh`; this hook
    handles the rest, each at most once. An event carrying a host matches only the
    injection's hosts; a run-wide event (a wave starting) matches any.
    """

    def __init__(self, targets: list[tuple[Injection, list[Host]]],
                 path_of: Callable[[Host], Path], say: Callable[[str], None]) -> None:
        self._pending = [(inj, hosts) for inj, hosts in targets if inj.when is not None]
        self._path_of = path_of
        self._say = say
        self._lock = threading.Lock()
        self.injected: list[str] = []  # "host: fault keys", for the report

    def __call__(self, event: RunEvent) -> None:
        with self._lock:
            due = [(inj, hosts) for inj, hosts in self._pending if self._matches(inj, hosts,
                                                                              event)]
            for item in due:
                self._pending.remove(item)
        for inj, hosts in due:
            for host in hosts:
                write_faults(self._path_of(host), inj.faults)
                line = f"{host.name}: {', '.join(sorted(inj.faults))}"
                self.injected.append(line)
                self._say(f"fault injected on {line} (on {event.kind.value})")

    @staticmethod
    def _matches(inj: Injection, hosts: list[Host], event: RunEvent) -> bool:
        when = inj.when
        assert when is not None
        if event.kind.value != when.event:
            return False
        if event.host is not None and event.host not in {h.name for h in hosts}:
            return False
        if when.phase is not None and event.phase != when.phase:
            return False
        if when.step is not None and event.step != when.step:
            return False
        return all(event.payload.get(k) == v for k, v in when.payload.items())


class Sandbox:
    """Provision, reset and tear down a sandbox inventory with the project's playbooks."""

    def __init__(self, root: Path, inventory: Path, say: Callable[[str], None],
                 forks: int = 50, timeout: float = PLAYBOOK_TIMEOUT) -> None:
        self.root = root
        self.inventory = inventory
        self.say = say
        self.forks = forks  # the project's `forks:`: a fleet sandbox is provisioned at once
        self.timeout = timeout  # seconds a provision or teardown playbook may take

    def dir_of(self, host: Host) -> Path:
        return sandbox_dir(host, self.inventory, self.root)

    def faults_of(self, host: Host) -> Path:
        return faults_file(host, self.inventory, self.root)

    def fresh(self, hosts: list[Host], upfront: dict[str, dict[str, Any]]) -> None:
        """Stop what a previous drill left, empty every host's directory, write the faults
        that hold from the start."""
        if any(self.dir_of(h).exists() for h in hosts):
            self.teardown()  # stand-ins run from their directories: none there, none running
        for host in hosts:
            d = self.dir_of(host)
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True, mode=0o700)
            faults = self.faults_of(host)
            if faults.exists():
                faults.unlink()
            if host.name in upfront:
                write_faults(faults, upfront[host.name])

    def busy_ports(self, hosts: list[Host]) -> list[str]:
        """Ports the sandbox's hosts will listen on (host variables named `*_port`) that
        something else already holds once our own stand-ins are stopped: another drill
        of another copy of the project, most often. Said before provisioning, in place
        of a failed Ansible task that does not say why."""
        wanted: dict[tuple[str, int], list[str]] = {}
        for host in hosts:
            for var, value in sorted(host.vars.items()):
                if var.endswith("_port") and not isinstance(value, bool) \
                        and isinstance(value, int | str) and str(value).isdigit():
                    wanted.setdefault((host.address, int(value)), []).append(
                        f"{var} of {host.name}")
        return [f"{address}:{port} ({', '.join(names)})"
                for (address, port), names in wanted.items() if port_open(address, port)]

    def provision(self) -> None:
        self.say("provisioning the sandbox: the original agent on every host")
        res = self._playbook(PROVISION)
        if res is None:
            raise ConfigError(f"{PROVISION} does not exist in {self.root}: a sandbox needs it")
        if res.returncode != 0:
            tail = (res.stdout + res.stderr).strip().splitlines()[-15:]
            raise ConfigError(f"{PROVISION} failed (exit {res.returncode}):\n" + "\n".join(tail))

    def teardown(self) -> None:
        try:
            self._playbook(TEARDOWN)
        except MigrateError as exc:  # a teardown that hangs must not hang the drill
            self.say(str(exc))

    def _playbook(self, rel: str) -> subprocess.CompletedProcess[str] | None:
        """Run a sandbox playbook; past `timeout` its whole process group is killed (Ansible
        forks workers) and a MigrateError says which playbook and after how long."""
        path = self.root / rel
        if not path.exists():
            return None
        args = ["ansible-playbook", "--forks", str(self.forks), "-i", str(self.inventory),
                str(path)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=self.root, env=ansible_env(),
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            tail = (out + err).strip().splitlines()[-10:]
            last = "; its last lines:\n" + "\n".join(tail) if tail else ""
            raise MigrateError(f"{rel} did not finish within {self.timeout:g}s; stopped it"
                               + last) from None
        except BaseException:
            _kill_group(proc)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the playbook, its process group and every process below it: ansible-core's
    task workers call setsid(), so the group alone leaves the task running."""
    from orchestrator.runners.descendants import kill_trees

    kill_trees([proc.pid])
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def ansible_env() -> dict[str, str]:
    """Quiet, colourless Ansible from the interpreter migrate runs in."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env
