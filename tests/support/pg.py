"""A real PostgreSQL server for the team-state tests, started and torn down by the test.

`initdb` and `pg_ctl` (Debian's /usr/lib/postgresql/<major>/bin) run as the `postgres`
user in a temp directory; the server listens on 127.0.0.1 on a port the fixture picked
(and on a private Unix socket directory, never /var/run/postgresql). The journal connects
as an ordinary role `migrate`, not as a superuser, so the tests prove that advisory
locks and `pg_locks` work with the privileges a team database grants.

Without the binaries, the `postgres` user or root, the tests skip, except under CI=true,
where they fail: CI must never skip the shared-state tests silently.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.real_parts import require

ROLE = "migrate"


def require_or_skip(what: str, ok: bool) -> None:
    require(ok, f"PostgreSQL cannot be started: {what}")


def pg_bindir() -> Path | None:
    """The newest installed server's bin directory (or $MIGRATE_TEST_PG_BINDIR)."""
    forced = os.environ.get("MIGRATE_TEST_PG_BINDIR")
    if forced:
        return Path(forced)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One throw-away cluster: `start`, `stop(mode)`, `restart`, and a database per test."""

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.sockets = base / "sock"
        self.log = base / "server.log"
        self.port = 0
        self._user = pwd.getpwnam("postgres")

    # --- process control ---------------------------------------------------------------------
    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(list(args), capture_output=True, text=True, user="postgres",
                             group=self._user.pw_gid, cwd=self.base, timeout=120,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                  "LC_ALL": "C.UTF-8"})
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): "
                               f"{res.stdout.strip()} {res.stderr.strip()} "
                               f"{self.log.read_text() if self.log.exists() else ''}")
        return res

    def init(self, fsync: bool = False, listen_also: str | None = None) -> None:
        os.chown(self.base, self._user.pw_uid, self._user.pw_gid)
        self.sockets.mkdir(mode=0o700)
        os.chown(self.sockets, self._user.pw_uid, self._user.pw_gid)
        self._as_postgres(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "--encoding=UTF8", "--no-sync")
        conf = self.data / "postgresql.conf"
        listen = "127.0.0.1" + (f",{listen_also}" if listen_also else "")
        with conf.open("a") as fh:
            # fsync off: the tests crash the server (-m immediate), not the machine, so the
            # OS cache keeps every committed page; it makes initdb/createdb much faster.
            # The benchmark keeps it on, as a real server would.
            if not fsync:
                fh.write("fsync = off\nfull_page_writes = off\n")
            fh.write(f"max_connections = 200\nlisten_addresses = '{listen}'\n")
        if listen_also:
            with (self.data / "pg_hba.conf").open("a") as fh:
                fh.write(f"host all all {listen_also}/24 trust\n")

    def start(self, attempts: int = 5) -> None:
        """Start on a free loopback port (another free one if that one got taken meanwhile)."""
        for _ in range(attempts):
            self.port = self.port or _free_port()
            res = self._as_postgres(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                "-t", "60", "-o", f"-p {self.port} -k {self.sockets}", "start", check=False)
            if res.returncode == 0:
                return
            self.port = 0  # probably lost the port to someone else: pick another
        raise RuntimeError(f"pg_ctl start failed: {res.stderr.strip()} "
                           f"{self.log.read_text() if self.log.exists() else ''}")

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: every backend dies, no checkpoint; `fast` is a clean stop."""
        self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                          "stop", check=False)

    def restart(self) -> None:
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # --- databases ---------------------------------------------------------------------------
    def psql(self, sql: str, db: str = "postgres") -> str:
        return self._as_postgres(str(self.bindir / "psql"), "-X", "-q", "-At", "-v",
                                 "ON_ERROR_STOP=1", "-h", str(self.sockets), "-p",
                                 str(self.port), "-U", "postgres", "-d", db, "-c", sql).stdout

    def create_role(self) -> None:
        self.psql(f"CREATE ROLE {ROLE} LOGIN")

    def create_database(self, name: str | None = None) -> str:
        """A fresh database owned by the ordinary role; returns its URL."""
        name = name or "t_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)

    def url(self, db: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{db}"

    def locks(self, url: str) -> list[tuple[str, str]]:
        """(host, run id) of every row of the journal's lock table at `url`."""
        rows = self.psql("SELECT host, run_id FROM locks ORDER BY host", db=url.rsplit("/", 1)[1])
        return [(host, run) for host, run in (line.split("|") for line in rows.splitlines())]



def can_start() -> tuple[bool, str]:
    bindir = pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        return False, "no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql)"
    if os.geteuid() != 0:
        return False, "must run as root (to run initdb and pg_ctl as the postgres user)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False, "no postgres user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False, "psycopg is not installed"
    return True, ""


@contextmanager
def running_server(fsync: bool = False, listen_also: str | None = None) -> Iterator[PgServer]:
    """A started cluster with the `migrate` role, removed afterwards even on failure."""
    ok, why = can_start()
    require_or_skip(why, ok)
    bindir = pg_bindir()
    assert bindir is not None
    base = Path(tempfile.mkdtemp(prefix="migrate-pg-"))
    os.chmod(base, 0o755)
    server = PgServer(bindir, base)
    try:
        try:
            server.init(fsync=fsync, listen_also=listen_also)
            server.start()
            server.create_role()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            require_or_skip(f"the test server did not start: {exc}", False)
        yield server
    finally:
        server.destroy()


def wait_until(predicate: object, timeout: float, every: float = 0.1) -> float:
    """Poll `predicate()` until true; returns the seconds it took, raises on timeout."""
    t0 = time.monotonic()
    while True:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not true within {timeout:g}s")
        time.sleep(every)


# A process that holds something in a journal until it is killed: the other "machine".
HOLDER = r"""
import sys, time
from pathlib import Path
from orchestrator.core.states import PhaseState
from orchestrator.state.leader import Leadership
from orchestrator.state.open import StateSettings, open_state

target, what, name, run_id = sys.argv[1:5]
if target.startswith("postgresql://"):
    journal = open_state(Path("/nonexistent"), StateSettings(url=target))
else:
    journal = open_state(Path(target).parent)
if what == "host":
    journal.acquire([name], run_id, f"migrate phase 1 --host {name}")
    journal.create_run(run_id, 1, [name], "migrate phase 1", "phase", False, {})
    journal.move_phase(run_id, name, 1, PhaseState.RUNNING, "run_started", "holder")
else:
    leadership = Leadership(journal, name)
    assert leadership.try_acquire(), "the holder must lead"
print("ready", flush=True)
time.sleep(3600)
"""


def spawn_holder(target: str, what: str, name: str, run_id: str = "r-holder",
                 prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """Start a process holding host `name` (what="host") or leadership `name` ("leader")
    in the journal at `target` (a state.db path or a URL); returns once it holds it.
    `prefix` runs it elsewhere, e.g. ("ip", "netns", "exec", ns): another machine."""
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([*prefix, sys.executable, "-c", HOLDER, target, what, name, run_id],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"holder did not start: {line} {proc.stderr.read() if proc.stderr else ''}")
    return proc


# Another machine: a network namespace behind a bridge, whose link can be cut so that it
# stops answering without closing anything (the way a machine dies, not a process).
@dataclass
class FarMachine:
    ns: str
    server_address: str  # the bridge's address, where the test server also listens
    address: str

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.ns)

    def cut(self) -> None:
        subprocess.run([*self.prefix, "ip", "link", "set", "eth0", "down"], check=True)


def _sh(*args: str, check: bool = True) -> None:
    res = subprocess.run(list(args), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")


@contextmanager
def far_machine() -> Iterator[FarMachine]:
    """A namespace `far` reaching this machine over a bridge on a 10.215.X.0/24 it owns."""
    require_or_skip("must run as root", os.geteuid() == 0)
    require_or_skip("iproute2 (ip) is not installed", shutil.which("ip") is not None)
    tag = f"{os.getpid() % 100000}"
    octet = 20 + os.getpid() % 200
    bridge, ns, veth = f"mpbr{tag}", f"mp{tag}-far", f"mpv{tag}"
    far = FarMachine(ns, f"10.215.{octet}.1", f"10.215.{octet}.2")
    try:
        _sh("ip", "link", "add", "name", bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{far.server_address}/24", "dev", bridge)
        _sh("ip", "link", "set", bridge, "up")
        _sh("ip", "netns", "add", ns)
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        _sh("ip", "link", "set", f"{veth}p", "netns", ns)
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", f"{veth}p", "name", "eth0")
        _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{far.address}/24", "dev", "eth0")
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        _sh("ip", "link", "set", veth, "master", bridge)
        _sh("ip", "link", "set", veth, "up")
        yield far
    finally:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        _sh("ip", "link", "del", veth, check=False)
        _sh("ip", "netns", "del", ns, check=False)
        _sh("ip", "link", "del", bridge, check=False)
