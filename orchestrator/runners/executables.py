"""Where migrate finds the commands of the tools it depends on (ansible-playbook, ...).

Users install migrate the way CLI tools are installed: with pipx, or in a venv whose
`bin/migrate` they call by its full path. Either way ansible-core is installed right
beside migrate, in the same environment, but that environment's `bin/` is usually
not on PATH. So a tool is looked up in migrate's own environment first (the
directory of the running interpreter, which is where the installer put the tool's
entry points), and only then on PATH: the copy that matches migrate's own
dependencies wins over whatever else the operator has installed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def own_bin_dir() -> Path:
    """The `bin/` of the environment migrate runs in (not resolved: a venv's python is a
    symlink to the base interpreter, whose directory has no ansible)."""
    return Path(sys.executable).parent


def find_executable(name: str) -> str | None:
    """Full path of `name`: from migrate's own environment first, then from PATH."""
    own = own_bin_dir() / name
    if own.is_file() and os.access(own, os.X_OK):
        return str(own)
    return shutil.which(name)


def path_with_own_bin(path: str | None = None) -> str:
    """PATH with migrate's environment first, for tools that start sibling commands
    themselves (ansible-playbook starting ansible-connection, for example)."""
    current = os.environ.get("PATH", "") if path is None else path
    own = str(own_bin_dir())
    parts = [p for p in current.split(os.pathsep) if p and p != own]
    return os.pathsep.join([own, *parts])
