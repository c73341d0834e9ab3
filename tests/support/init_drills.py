"""Helpers for the drills of projects that `migrate init` writes: a free block of sandbox
ports, the sandbox's teardown, and a drill document's failed checks."""

from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(hosts: int, extra: int = 0) -> int:
    """A base for `--sandbox-ports` whose ports are all free now (20000-31999, below the
    kernel's ephemeral range, so that no outgoing connection takes one meanwhile): 1 to 3
    of each host's 10, and `extra` more after the hosts' (the dependents' stand-ins)."""
    for _ in range(200):
        base = random.randrange(20000, 31000, 100)
        ports = [base + 10 * i + k for i in range(hosts) for k in (1, 2, 3)]
        ports += [base + 10 * hosts + 1 + k for k in range(extra)]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free port block")


def teardown(project: Path) -> None:
    subprocess.run(["ansible-playbook", "-i", str(project / "inventory/sandbox.yml"),
                    str(project / "playbooks/sandbox/teardown.yml")], capture_output=True,
                   timeout=120)


def failed(doc: dict[str, object]) -> list[object]:
    return [c for c in doc["checks"] if not c["ok"]]  # type: ignore[attr-defined,index]
