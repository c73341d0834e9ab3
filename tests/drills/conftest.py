"""The drills' copies of the repository's migration project (the shipped project, its real
playbooks and stand-in agent), in tmp so that a drill's state never touches the repository,
with the sandbox inventories' ports moved to free ones."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("migration.yaml", "phases", "playbooks", "rollback", "inventory", "sandbox",
         "rehearsals", "deploy")
_PORT = re.compile(r"(\b\w+_port:\s*)(\d+)")


def _free_ports(count: int) -> list[int]:
    """Ports free on this machine now, from the kernel; held open together so they differ."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _move_ports(paths: list[Path]) -> None:
    """Give the sandbox inventories' fixed ports fresh free ones (the same port stays the
    same port across variables and files), so that drills running at once, in this
    session or another, never meet on a port."""
    texts = {p: p.read_text() for p in paths}
    fixed = sorted({int(m.group(2)) for t in texts.values() for m in _PORT.finditer(t)})
    moved = dict(zip(fixed, _free_ports(len(fixed)), strict=True))
    for path, text in texts.items():
        path.write_text(_PORT.sub(lambda m: f"{m.group(1)}{moved[int(m.group(2))]}", text))


def copy_project(root: Path) -> Path:
    root.mkdir()
    for part in PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, root / part)
        else:
            shutil.copy(src, root / part)
    _move_ports([root / "inventory" / "sandbox.yml", root / "inventory" / "fleet-sandbox.yml"])
    return root


@pytest.fixture(scope="session")
def drill_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy per worker, shared by the drills that leave the project's files alone: the
    first drill on an inventory provisions its sandbox, and `migrate rehearse` keeps what
    provisioning installed (playbooks/sandbox/start.yml), so every later drill restores
    those directories and starts the stand-ins instead of provisioning again. Each drill
    keeps its own journal (.migrate/rehearsals/ID) and stops its stand-ins at its end."""
    return copy_project(tmp_path_factory.mktemp("drills") / "mma")


@pytest.fixture
def own_project(tmp_path: Path) -> Path:
    """A copy of a test's own, for a test that changes the project's files."""
    return copy_project(tmp_path / "mma")
