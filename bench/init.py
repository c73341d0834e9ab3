"""Benchmark of `migrate init` and of a rehearsal of the project it writes.

    python3 bench/init.py [--no-rehearsal] [--scenario clean]

Targets (issue 22): `init` under 1 s (as a command, interpreter start included); a
rehearsal of a fresh `init` project under 2 minutes. Issue 28: `init --agent NAME
--services ...` in at most 1 s, on the shared manifests (../shared/seed, read from there)
for ModelManagerSuite (13 dependents), its script the seed's 4,800-line agent (linked
into a temporary --source, never copied), and on the small system of tests/fixtures.
Prints one line per figure and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INIT_TARGET = 1.0
REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "init_system"


def _seed() -> Path:
    """../shared/seed above the checkout (a worktree's included)."""
    for above in REPO.parents:
        if (above / "shared" / "seed").is_dir():
            return above / "shared" / "seed"
    raise SystemExit("no shared/seed above the checkout")
REHEARSAL_TARGET = 120.0


def _migrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)


def bench_init(tmp: Path, rounds: int = 5) -> tuple[float, float]:
    """Median seconds of `migrate init` as a command, and of `init_project` in-process."""
    from orchestrator.init import init_project

    command = []
    for i in range(rounds):
        started = time.perf_counter()
        res = _migrate("init", str(tmp / f"cli{i}"), "--name", "bench-agent",
                       "--host", "a", "--host", "b", "--host", "c")
        command.append(time.perf_counter() - started)
        if res.returncode != 0:
            raise SystemExit(f"init failed: {res.stderr}")
    inproc = []
    for i in range(rounds):
        started = time.perf_counter()
        init_project(tmp / f"lib{i}", "bench-agent", ["a", "b", "c"])
        inproc.append(time.perf_counter() - started)
    return statistics.median(command), statistics.median(inproc)


def _child_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_services_init(tmp: Path, rounds: int = 5
                        ) -> dict[str, tuple[float, float, float]]:
    """Median seconds of `init --agent NAME --services ...` as a command (wall clock, and
    the CPU it used: on a shared machine the wall clock waits for the others), and of
    `init_agent_project` in-process, per system."""
    from orchestrator.init_services import init_agent_project

    seed = _seed()
    source = tmp / "system"
    script = source / "main_pc_code" / "model_manager_suite.py"
    script.parent.mkdir(parents=True)
    script.symlink_to(seed / "model_manager_agent.py")
    systems = {
        "shared manifests, ModelManagerSuite (4,800 lines, 13 dependents)":
            ("ModelManagerSuite", [f"main={seed}/startup_config.main.yaml",
                                   f"pc2={seed}/startup_config.pc2.yaml"], source),
        "fixture system, SpeechAgent (3 dependents)":
            ("SpeechAgent", [str(FIXTURE / "startup_config.main.yaml"),
                             str(FIXTURE / "startup_config.pc2.yaml")], FIXTURE / "src"),
    }
    out = {}
    for n, (label, (agent, services, src)) in enumerate(systems.items()):
        args = [a for s in services for a in ("--services", s)]
        command, cpu = [], []
        for i in range(rounds):
            started, cpu0 = time.perf_counter(), _child_cpu()
            res = _migrate("init", str(tmp / f"svc{n}-{i}"), "--agent", agent, *args,
                           "--source", str(src))
            command.append(time.perf_counter() - started)
            cpu.append(_child_cpu() - cpu0)
            if res.returncode != 0:
                raise SystemExit(f"init --agent {agent} failed: {res.stderr}")
        inproc = []
        for i in range(rounds):
            started = time.perf_counter()
            init_agent_project(tmp / f"svclib{n}-{i}", agent, services, src)
            inproc.append(time.perf_counter() - started)
        out[label] = (statistics.median(command), statistics.median(cpu),
                      statistics.median(inproc))
    return out


def bench_rehearsal(tmp: Path, scenario: str) -> tuple[float, bool, dict[str, object]]:
    project = tmp / "rehearsed"
    res = _migrate("init", str(project), "--name", "bench-rehearsal-agent")
    if res.returncode != 0:
        raise SystemExit(f"init failed: {res.stderr}")
    started = time.perf_counter()
    res = _migrate("--project", str(project), "--output", "json", "rehearse", "--scenario",
                   scenario)
    seconds = time.perf_counter() - started
    subprocess.run(["ansible-playbook", "-i", str(project / "inventory/sandbox.yml"),
                    str(project / "playbooks/sandbox/teardown.yml")], capture_output=True)
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        raise SystemExit(f"rehearsal gave no document (exit {res.returncode}):\n"
                         f"{res.stderr[-2000:]}") from None
    return seconds, bool(doc.get("passed")), doc


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-rehearsal", action="store_true")
    parser.add_argument("--scenario", default="clean")
    args = parser.parse_args()
    ok = True
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load {load:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        command, inproc = bench_init(Path(tmp))
        print(f"init (3 hosts), as a command: {command:.3f}s median of 5 "
              f"(target < {INIT_TARGET:g}s); in-process: {inproc * 1000:.1f}ms")
        ok &= command < INIT_TARGET
        for label, (command, cpu, inproc) in bench_services_init(Path(tmp)).items():
            print(f"init --agent NAME --services ({label}), as a command: {command:.3f}s "
                  f"median of 5 (target <= {INIT_TARGET:g}s), {cpu:.3f}s of CPU; "
                  f"in-process: {inproc * 1000:.1f}ms")
            ok &= command <= INIT_TARGET
        if not args.no_rehearsal:
            seconds, passed, doc = bench_rehearsal(Path(tmp), args.scenario)
            print(f"rehearse --scenario {args.scenario} of a fresh init project: "
                  f"{seconds:.1f}s (drill {doc.get('seconds')}s, "
                  f"{'PASSED' if passed else 'FAILED'}; target < {REHEARSAL_TARGET:g}s)")
            ok &= passed and seconds < REHEARSAL_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
