"""migrate as users install CLI tools: its own entry point, with nothing else on PATH.

pipx and a venv's `bin/migrate` called by its full path both leave the environment's
`bin/` off PATH; ansible-playbook is installed right beside migrate there and must be
found. Also: `--version` and click's shell completion for bash and zsh.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from orchestrator.runners.executables import find_executable, path_with_own_bin
from tests.support.projects import make_project
from tests.support.real_parts import require

ENTRY = Path(sys.executable).parent / "migrate"
BARE_PATH = "/usr/bin:/bin"


def entry_point() -> str:
    require(ENTRY.is_file(), f"no {ENTRY} (install with pip install -e .)")
    return str(ENTRY)


def bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PATH", "MIGRATE_PROJECT")}
    return dict(env, PATH=BARE_PATH, **extra)


@pytest.mark.integration
def test_a_playbook_step_runs_with_only_the_entry_point_on_path(tmp_path: Path) -> None:
    migrate = entry_point()
    for d in BARE_PATH.split(":"):
        assert not (Path(d) / "ansible-playbook").exists(), "this test needs ansible off PATH"
    proj = make_project(tmp_path)
    proj.phase(1, "markers", """\
        phase: 1
        steps:
          - id: one
            playbook: playbooks/touch.yml
            rollback: rollback/untouch.yml
        """)
    res = subprocess.run([migrate, "--project", str(proj.root), "phase", "1", "--host", "main"],
                         capture_output=True, text=True, timeout=180, env=bare_env(),
                         stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not on PATH" not in res.stderr
    assert (proj.markers / "main-one").read_text().strip() != ""
    assert proj.order() == ["do main one"]


def test_ansible_is_looked_up_beside_migrate_first() -> None:
    own = Path(sys.executable).parent
    found = find_executable("ansible-playbook")
    assert found == str(own / "ansible-playbook")
    assert path_with_own_bin("/usr/bin:/bin").split(":") == [str(own), "/usr/bin", "/bin"]
    assert path_with_own_bin(f"{own}:/bin").split(":") == [str(own), "/bin"]
    assert find_executable("surely-not-a-command-anywhere") is None


def test_version_comes_from_the_package_metadata() -> None:
    res = subprocess.run([entry_point(), "--version"], capture_output=True, text=True,
                         env=bare_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"migrate {version('migrate')}"


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _migrate_completion migrate"),
    ("zsh", "#compdef migrate"),
])
def test_shell_completion_scripts(shell: str, marker: str) -> None:
    res = subprocess.run([entry_point()], capture_output=True, text=True, timeout=60,
                         env=bare_env(_MIGRATE_COMPLETE=f"{shell}_source"))
    assert res.returncode == 0, res.stderr
    assert marker in res.stdout


def test_bash_completion_completes_commands_and_options() -> None:
    def complete(words: str) -> list[str]:
        res = subprocess.run([entry_point()], capture_output=True, text=True, timeout=60,
                             env=bare_env(_MIGRATE_COMPLETE="bash_complete", COMP_WORDS=words,
                                          COMP_CWORD=str(len(words.split()) - 1)))
        assert res.returncode == 0, res.stderr
        return res.stdout.splitlines()

    assert "plain,status" in complete("migrate st")
    assert "plain,--dry-run" in complete("migrate phase --dr")


def test_bash_completion_of_hosts_and_groups_from_the_inventory(tmp_path: Path) -> None:
    proj = make_project(tmp_path, hosts=("main", "pc2", "mma-3"))
    res = subprocess.run([entry_point()], capture_output=True, text=True, timeout=60,
                         env=bare_env(_MIGRATE_COMPLETE="bash_complete",
                                      COMP_WORDS=f"migrate --project {proj.root} phase 1 "
                                                 "--host m", COMP_CWORD="6"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["plain,main", "plain,mma-3"]
