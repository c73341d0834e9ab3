"""The sandbox a drill runs in: its hosts' directories, faults, processes and ports.

Every host of a sandbox inventory is on this machine (local connection) with its own
`sandbox_dir`, running the project's stand-in agent, which re-reads its faults file
on every request. This module knows the conventions a sandbox inventory follows
(variables `sandbox_dir`, `faults_file`; playbooks `playbooks/sandbox/provision.yml`
and `teardown.yml`) and asks the real processes for the facts a drill is judged on:
which revision an agent runs, whether a port answers. It knows no host or port.

Provisioning is the dearest part of a drill's setup (a dozen Ansible tasks a host). A
project that ships `playbooks/sandbox/start.yml` says that a provisioned sandbox can be
started again from its files: after a provision, every host's directory is kept under
`.migrate/sandbox-provisioned/` (without `run/`, where the stand-ins keep pid files and
logs, and without the faults file), and the next drill on the same inventory, with the
project's files and the interpreter unchanged, restores those directories, writes its
faults and runs start.yml instead of provision.yml. start.yml redoes whatever of the
provisioning depends on the faults.
"""

from __future__ import annotations

import hashlib
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError, MigrateError
from orchestrator.config.inventory import Host
from orchestrator.core.events import RunEvent
from orchestrator.rehearsal.scenario import DEFAULT_HEALTH_URL, Injection

PROVISION = "playbooks/sandbox/provision.yml"
TEARDOWN = "playbooks/sandbox/teardown.yml"
START = "playbooks/sandbox/start.yml"
#: under a host's sandbox dir: its stand-ins' pid files and logs, never kept or restored
RUN_DIR = "run"
#: under the project: each sandbox inventory's provisioned host directories (start.yml)
PROVISIONED = Path(".migrate") / "sandbox-provisioned"
#: project directories whose files do not change what a provision installs (and every
#: directory whose name starts with a dot: .migrate, .git, .venv, caches)
_NOT_INPUTS = frozenset({"__pycache__", "rehearsals", "node_modules"})
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

    def fresh(self, hosts: list[Host], upfront: dict[str, dict[str, Any]]) -> bool:
        """Stop what a previous drill left, give every host an empty directory, or the one
        provision.yml left when that copy is current, and write the faults that hold from
        the start. True when the copy was restored: `start`, not `provision`, follows."""
        if self._running(hosts):
            self.teardown()  # stand-ins run from their directories: none there, none running
        kept = self._kept(hosts)
        for host in hosts:
            d = self.dir_of(host)
            if d.exists():
                shutil.rmtree(d)
            if kept is None:
                d.mkdir(parents=True, mode=0o700)
            else:
                d.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(kept / host.name, d, symlinks=True)
            faults = self.faults_of(host)
            if faults.exists():
                faults.unlink()
            if host.name in upfront:
                write_faults(faults, upfront[host.name])
        return kept is not None

    def _running(self, hosts: list[Host]) -> bool:
        """Whether a previous drill may have left a stand-in: a pid file in a host's run/
        directory, or a port of the sandbox that answers. A directory alone (the stand-ins
        stopped by the last drill's teardown) needs no teardown."""
        for host in hosts:
            run = self.dir_of(host) / RUN_DIR
            if run.is_dir() and any(run.glob("*.pid")):
                return True
            if not self.dir_of(host).exists():
                continue
            if any(port_open(host.address, int(value)) for var, value in host.vars.items()
                   if var.endswith("_port") and not isinstance(value, bool)
                   and isinstance(value, int | str) and str(value).isdigit()):
                return True
        return False

    def _kept_dir(self) -> Path:
        """Where this inventory's provisioned directories are kept."""
        name = hashlib.sha256(str(self.inventory).encode()).hexdigest()[:16]
        return self.root / PROVISIONED / name

    def _inputs(self, hosts: Sequence[Host]) -> str:
        """What a provision depends on: the project's files (by name, size and time), the
        inventory's hosts and their directories, the interpreter. The faults are not in it:
        start.yml derives again what depends on them."""
        digest = hashlib.sha256()
        digest.update(f"{sys.executable}\n{self.inventory}\n".encode())
        boxes = set()  # the hosts' own directories and faults: a drill's, not inputs
        for host in hosts:
            boxes |= {self.dir_of(host), self.faults_of(host)}
            digest.update(f"{host.name}={self.dir_of(host)}\n".encode())
        for top, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if d not in _NOT_INPUTS and not d.startswith(".")
                             and Path(top, d) not in boxes)
            for name in sorted(files):
                path = Path(top) / name
                if path in boxes:
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue
                digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def _kept(self, hosts: list[Host]) -> Path | None:
        """The provisioned copy to restore, when the project has start.yml and the copy was
        made from the same inputs for every host; else None (provision again)."""
        kept = self._kept_dir()
        if not (self.root / START).exists() or not (kept / "INPUTS").is_file():
            return None
        if (kept / "INPUTS").read_text() != self._inputs(hosts):
            return None
        if not all((kept / h.name).is_dir() for h in hosts):
            return None
        return kept

    def keep_provisioned(self, hosts: Sequence[Host]) -> None:
        """After a provision: keep every host's directory (without run/ and the faults
        file) for the next drill to restore, when the project has start.yml."""
        if not (self.root / START).exists():
            return
        kept = self._kept_dir()
        tmp = kept.with_name(kept.name + ".tmp")
        for old in (tmp, kept):
            if old.exists():
                shutil.rmtree(old)
        tmp.mkdir(parents=True, mode=0o700)
        for host in hosts:
            d = self.dir_of(host)
            skip = {d / RUN_DIR, self.faults_of(host)}
            shutil.copytree(d, tmp / host.name, symlinks=True,
                            ignore=lambda top, names, skip=skip: [
                                n for n in names if Path(top) / n in skip])
        (tmp / "INPUTS").write_text(self._inputs(hosts))
        os.replace(tmp, kept)

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

    def provision(self, hosts: Sequence[Host] = ()) -> None:
        """Install and start the original agent on every host (provision.yml), then keep
        `hosts`' directories for the next drill (see `keep_provisioned`)."""
        self.say("provisioning the sandbox: the original agent on every host")
        self._must_run(PROVISION, "a sandbox needs it")
        if hosts:
            self.keep_provisioned(hosts)

    def start(self) -> None:
        """Start the stand-ins of a sandbox restored by `fresh` (start.yml)."""
        self.say("starting the provisioned sandbox again: the original agent on every host")
        self._must_run(START, "restoring a provisioned sandbox needs it")

    def _must_run(self, rel: str, why: str) -> None:
        res = self._playbook(rel)
        if res is None:
            raise ConfigError(f"{rel} does not exist in {self.root}: {why}")
        if res.returncode != 0:
            tail = (res.stdout + res.stderr).strip().splitlines()[-15:]
            raise ConfigError(f"{rel} failed (exit {res.returncode}):\n" + "\n".join(tail))

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
