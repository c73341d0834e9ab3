"""Start-up time of `migrate --help`, `migrate status` and `migrate plan` (goals: help and
status under 0.3 s; plan no dearer than status).

Prints the median wall time and the median CPU time (user + system, from
RUSAGE_CHILDREN: the steadier figure on a loaded machine) of N runs of each, next to a
bare `python -c pass` and to `ansible-playbook --version` for reference, and each
command's wall time as a share of ansible-playbook's. The runs are interleaved, so a
burst of load falls on every command alike. Uses the interpreter's own `migrate` entry
point (not a version-manager shim).

Our modules are read from cached bytecode, as an installed package's are (pip compiles
them at install; Ansible's are compiled too): the children get a bytecode cache of
their own (PYTHONPYCACHEPREFIX, a temporary directory) and one warm-up run fills it,
even where PYTHONDONTWRITEBYTECODE is set (an editable checkout then recompiles every
module on every run: --cold measures that).
Run: python bench/startup.py [N] [--cold]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run."""
    t0, c0 = time.perf_counter(), child_cpu()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   env=env)
    return time.perf_counter() - t0, child_cpu() - c0


def timed(commands: dict[str, list[str]], runs: int,
          env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """The median (wall, CPU) seconds of each command, the commands taking turns run
    after run."""
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            seen[name].append(once(cmd, env))
    return {name: (statistics.median(w for w, _ in times), statistics.median(c for _, c in times))
            for name, times in seen.items()}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    cold = "--cold" in sys.argv[1:]
    runs = int(args[0]) if args else 10
    entry = Path(sys.executable).parent / "migrate"
    migrate = [str(entry)] if entry.exists() else [sys.executable, "-m", "orchestrator"]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if not cold:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "bytecode")
        proj = Path(tmp) / "proj"
        for part in ("migration.yaml", "phases", "playbooks", "rollback", "inventory"):
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, proj / part)
            elif src.exists():
                proj.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, proj / part)
        env_project = ["--project", str(proj)]
        commands = {"python -c pass": [sys.executable, "-c", "pass"],
                    "migrate --help": [*migrate, "--help"],
                    "migrate status": [*migrate, *env_project, "status"],
                    "migrate plan 1": [*migrate, *env_project, "plan", "1", "--host", "main"]}
        ansible = shutil.which("ansible-playbook")
        if ansible is not None:
            commands["ansible-playbook --version"] = [ansible, "--version"]
        if not cold:
            timed(commands, 1, env)  # fills the bytecode cache
        medians = timed(commands, runs, env)
    reference = medians.get("ansible-playbook --version", (0.0, 0.0))[0]
    print(f"{'':<27} {'wall':>7}   {'CPU':>7}")
    for name, (seconds, cpu) in medians.items():
        share = f"  {seconds / reference:.2f}x ansible-playbook --version (wall)" \
            if reference and name.startswith("migrate") else ""
        print(f"{name:<27} {seconds:.3f} s  {cpu:.3f} s{share}")
    if not (ROOT / "migration.yaml").exists():
        print("(no project: status and plan took their error path)")
    print(f"(median of {runs}; {os.cpu_count()} cores; "
          + ("no cached bytecode: every module compiled on every run)" if cold
             else "our modules from cached bytecode, as installed)"))


if __name__ == "__main__":
    main()
