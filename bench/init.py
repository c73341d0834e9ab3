"""Benchmark of `migrate init` and of a rehearsal of the project it writes.

    python3 bench/init.py [--no-rehearsal] [--scenario clean]

Targets (issue 22): `init` under 1 s (as a command, interpreter start included); a
rehearsal of a fresh `init` project under 2 minutes. Prints one line per figure and
exits 1 when a target is missed.
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
        if not args.no_rehearsal:
            seconds, passed, doc = bench_rehearsal(Path(tmp), args.scenario)
            print(f"rehearse --scenario {args.scenario} of a fresh init project: "
                  f"{seconds:.1f}s (drill {doc.get('seconds')}s, "
                  f"{'PASSED' if passed else 'FAILED'}; target < {REHEARSAL_TARGET:g}s)")
            ok &= passed and seconds < REHEARSAL_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
