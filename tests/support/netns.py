"""Two real hosts on one machine: network namespaces `main` and `pc2`, each with its own
veth address on a private bridge and its own sshd, for the two-host tests.

Built with `ip netns`, a bridge and veth pairs on a 10.213.X.0/24 subnet the tests own;
host and client keys are generated, known_hosts is written, so SSH is checked for real.
Everything is torn down again, even after a failure. Without root, iproute2 or sshd the
tests skip, except under CI=true, where they fail (CI must never skip them silently).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.real_parts import require

SSHD = "/usr/sbin/sshd"


def require_or_skip(what: str, ok: bool) -> None:
    require(ok, f"the two-host lab cannot be built: {what}")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(args), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")
    return res


@dataclass
class NetHost:
    name: str
    ns: str
    address: str
    veth: str
    sshd: subprocess.Popen[bytes] | None = None

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside this host's namespace (for faults, not for steps)."""
        return subprocess.run(["ip", "netns", "exec", self.ns, "sh", "-c", command],
                              capture_output=True, text=True)


@dataclass
class Lab:
    dir: Path
    bridge: str
    subnet: str
    key: Path
    known_hosts: Path
    hosts: dict[str, NetHost] = field(default_factory=dict)

    def host_vars(self, name: str) -> str:
        h = self.hosts[name]
        return (f"      ansible_host: {h.address}\n"
                f"      ansible_user: root\n"
                f"      ansible_ssh_private_key_file: {self.key}\n"
                f"      ansible_ssh_common_args: '-o UserKnownHostsFile={self.known_hosts} "
                f"-o StrictHostKeyChecking=yes -o ConnectTimeout=5'\n"
                f"      ansible_python_interpreter: {sys.executable}\n")

    def inventory(self, markers: Path, hosts: dict[str, str]) -> str:
        """The head of an inventory of the lab's hosts: `marker_dir` (where the tests'
        playbooks leave their marks) and each inventory name -> the lab host it is."""
        return ("all:\n  vars:\n"
                f"    marker_dir: {markers}\n"
                "  hosts:\n"
                + "".join(f"    {name}:\n{self.host_vars(lab_host)}"
                          for name, lab_host in hosts.items()))

    def cut(self, name: str) -> None:
        """Take the host off the network (its link goes down)."""
        self.hosts[name].run("ip link set eth0 down")

    def restore(self, name: str) -> None:
        """Bring the host back, and return only once its sshd answers from the root
        namespace: a link just set up can still refuse for a moment (the address comes
        back, ARP is relearned), and the next test on this lab must find the host up."""
        h = self.hosts[name]
        h.run(f"ip link set eth0 up && ip addr replace {h.address}/24 dev eth0")
        _wait_port(h.address, 22, limit=30)


def long_step(sleep: str) -> str:
    """A playbook whose task marks the host (HOST-STEP, and HOST-STEP-started once it
    runs), then sleeps `sleep` (a number or a Jinja expression): a step to cut a link or
    send a signal in the middle of."""
    return f"""\
- name: a long task
  hosts: all
  gather_facts: false
  tasks:
    - name: start, then take a while
      ansible.builtin.shell: >-
        touch {{{{ marker_dir }}}}/{{{{ inventory_hostname }}}}-{{{{ migrate_step }}}};
        echo started > {{{{ marker_dir }}}}/{{{{ inventory_hostname }}}}-{{{{ migrate_step }}}}-started;
        sleep {sleep}
      changed_when: true
"""


def _wait_port(address: str, port: int, limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{address}:{port} never answered")


@contextmanager
def two_hosts(tmp: Path) -> Iterator[Lab]:
    require_or_skip("must run as root", os.geteuid() == 0)
    require_or_skip("iproute2 (ip) is not installed", shutil.which("ip") is not None)
    require_or_skip("openssh-server (sshd) is not installed", os.path.exists(SSHD))
    require_or_skip("ssh-keygen is not installed", shutil.which("ssh-keygen") is not None)
    tag = f"{os.getpid() % 100000}"
    octet = 20 + os.getpid() % 200
    lab = Lab(dir=tmp / "lab", bridge=f"mgbr{tag}", subnet=f"10.213.{octet}",
              key=tmp / "lab" / "client_key", known_hosts=tmp / "lab" / "known_hosts")
    lab.dir.mkdir(parents=True)
    try:
        sh("ip", "link", "add", "name", lab.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{lab.subnet}.1/24", "dev", lab.bridge)
        sh("ip", "link", "set", lab.bridge, "up")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lab.key))
        (lab.dir / "authorized_keys").write_text(Path(f"{lab.key}.pub").read_text())
        Path("/run/sshd").mkdir(exist_ok=True)
        known = []
        for i, name in enumerate(("main", "pc2")):
            host = NetHost(name, f"mg{tag}-{name}", f"{lab.subnet}.{10 + i}", f"mgv{tag}{name[0]}")
            lab.hosts[name] = host
            sh("ip", "netns", "add", host.ns)
            sh("ip", "netns", "exec", host.ns, "ip", "link", "set", "lo", "up")
            sh("ip", "link", "add", host.veth, "type", "veth", "peer", "name", f"{host.veth}p")
            sh("ip", "link", "set", f"{host.veth}p", "netns", host.ns)
            sh("ip", "netns", "exec", host.ns, "ip", "link", "set", f"{host.veth}p", "name", "eth0")
            sh("ip", "netns", "exec", host.ns, "ip", "addr", "add", f"{host.address}/24", "dev",
               "eth0")
            sh("ip", "netns", "exec", host.ns, "ip", "link", "set", "eth0", "up")
            sh("ip", "link", "set", host.veth, "master", lab.bridge)
            sh("ip", "link", "set", host.veth, "up")
            hdir = lab.dir / name
            hdir.mkdir()
            hostkey = hdir / "ssh_host_ed25519_key"
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
            known.append(f"{host.address} {Path(f'{hostkey}.pub').read_text().strip()}")
            (hdir / "sshd_config").write_text(
                f"ListenAddress {host.address}\nPort 22\nHostKey {hostkey}\n"
                f"PidFile {hdir / 'sshd.pid'}\nAuthorizedKeysFile {lab.dir / 'authorized_keys'}\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
                "MaxStartups 50\nMaxSessions 50\nLogLevel ERROR\n")
            host.sshd = subprocess.Popen(["ip", "netns", "exec", host.ns, SSHD, "-D", "-e", "-f",
                                          str(hdir / "sshd_config")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lab.known_hosts.write_text("\n".join(known) + "\n")
        for host in lab.hosts.values():
            _wait_port(host.address, 22)
        yield lab
    finally:
        for host in lab.hosts.values():
            if host.sshd is not None:
                host.sshd.terminate()
                try:
                    host.sshd.wait(5)
                except subprocess.TimeoutExpired:
                    host.sshd.kill()
            sh("ip", "netns", "pids", host.ns, check=False)
            for pid in sh("ip", "netns", "pids", host.ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "link", "del", host.veth, check=False)
            sh("ip", "netns", "del", host.ns, check=False)
        sh("ip", "link", "del", lab.bridge, check=False)
