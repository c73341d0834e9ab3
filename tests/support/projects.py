"""Builders for small migration projects in a temp directory, used across the tests.

Marker playbooks write `<markers>/<host>-<step>` and append to `<markers>/order.log`,
so tests prove order and reversal by files on disk, not by the engine's account.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path


def shell_play(play: str, task: str, *script: str) -> str:
    """A playbook of one shell task on every host; `script` is its lines (folded into one
    command, so each ends with `;` or continues the line before)."""
    lines = "".join(f"\n        {line}" for line in script)
    return (f"- name: {play}\n  hosts: all\n  gather_facts: false\n  tasks:\n"
            f"    - name: {task}\n      ansible.builtin.shell: >-{lines}\n"
            "      changed_when: true\n")


TOUCH = """\
- name: write a marker for this step
  hosts: all
  gather_facts: false
  tasks:
    - name: marker file
      ansible.builtin.copy:
        dest: "{{ marker_dir }}/{{ inventory_hostname }}-{{ migrate_step }}"
        content: "{{ migrate_run_id }}\\n"
        mode: "0644"
    - name: order log
      ansible.builtin.shell: "echo do {{ inventory_hostname }} {{ migrate_step }} >> {{ marker_dir }}/order.log"
      changed_when: true
"""

UNTOUCH = """\
- name: remove the marker of this step
  hosts: all
  gather_facts: false
  tasks:
    - name: marker file
      ansible.builtin.file:
        path: "{{ marker_dir }}/{{ inventory_hostname }}-{{ migrate_step }}"
        state: absent
    - name: order log
      ansible.builtin.shell: "echo undo {{ inventory_hostname }} {{ migrate_step }} >> {{ marker_dir }}/order.log"
      changed_when: true
"""

FAIL = """\
- name: fail on purpose
  hosts: all
  gather_facts: false
  tasks:
    - name: half-apply, then fail
      ansible.builtin.shell: "echo do {{ inventory_hostname }} {{ migrate_step }} >> {{ marker_dir }}/order.log; exit 1"
"""

ROLLBACK_FAILS = """\
- name: an undo that fails
  hosts: all
  gather_facts: false
  tasks:
    - name: fail
      ansible.builtin.fail:
        msg: cannot undo {{ migrate_step }}
"""


@dataclass
class Proj:
    root: Path
    markers: Path

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text) if text.startswith("\n") else text)
        return path

    def phase(self, number: int, slug: str, body: str) -> Path:
        return self.write(f"phases/{number}-{slug}.yaml", textwrap.dedent(body))

    def order(self) -> list[str]:
        log = self.markers / "order.log"
        return log.read_text().split("\n")[:-1] if log.exists() else []

    def reached(self, proc: subprocess.Popen[str], marker: str, limit: float) -> bool:
        """Wait until `marker` is a file among the markers or in a line of order.log (a
        step got that far); False when `proc` ended first or `limit` seconds passed."""
        deadline = time.monotonic() + limit
        while not (self.markers / marker).exists() and \
                not any(marker in line for line in self.order()):
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def migrate(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(self.root),
                               *args], capture_output=True, text=True, timeout=timeout,
                              env=full_env, stdin=subprocess.DEVNULL)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """`migrate` in the background, for tests that act on it while it runs."""
        return subprocess.Popen([sys.executable, "-m", "orchestrator", "--project", str(self.root),
                                 *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def _pids_whose(proc_file: str, needle: bytes) -> list[int]:
    """Pids (but this one) whose /proc/PID/`proc_file` (NUL-separated) holds `needle`,
    NULs read as spaces."""
    pids = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = Path(f"/proc/{name}/{proc_file}").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if needle in text and int(name) != os.getpid():
            pids.append(int(name))
    return pids


def running(token: str) -> list[int]:
    """Pids of the processes whose command line contains `token` (read from /proc)."""
    return _pids_whose("cmdline", token.encode())


def carrying(variable: str) -> list[int]:
    """Pids of the processes whose environment sets `variable` (read from /proc)."""
    return _pids_whose("environ", f"{variable}=".encode())


def make_project(tmp: Path, migration: str | None = None, hosts: tuple[str, ...] = ("main", "pc2"),
                 ) -> Proj:
    root = tmp / "proj"
    markers = tmp / "markers"
    markers.mkdir(parents=True)
    proj = Proj(root, markers)
    proj.write("migration.yaml", migration or "name: test-migration\ninventory: inventory/hosts.yml\n"
               "poll_interval: 1s\n")
    host_lines = "".join(f"    {h}:\n      agent_service: agent-{h}\n" for h in hosts)
    proj.write("inventory/hosts.yml",
               "all:\n  vars:\n    ansible_connection: local\n"
               "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n"
               f"    marker_dir: {markers}\n  hosts:\n{host_lines}"
               "  children:\n    gpu:\n      hosts:\n        main:\n")
    proj.write("playbooks/touch.yml", TOUCH)
    proj.write("rollback/untouch.yml", UNTOUCH)
    proj.write("playbooks/fail.yml", FAIL)
    proj.write("rollback/fails.yml", ROLLBACK_FAILS)
    return proj
