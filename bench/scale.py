"""The engine at internet scale (issue 31): 10,000 inventory hosts, the journal on PostgreSQL.

A benchmark, not a test: it prints figures beside their goals. Steps go through the fake
runners (runners/fake.py), so what is measured is the engine's own cost, not Ansible's.

(a) one wave of 10,000 hosts through a phase of 3 playbook steps, in this process through
    `RunLifecycle` (the engine `migrate phase` drives), the journal on a real PostgreSQL
    (fsync on): the engine's wall and CPU time per host per step, the PostgreSQL server's
    CPU time per host per step, and the journal's writes per host per step (transactions
    committed and rows written, from pg_stat_database);
(b) `migrate status` and `migrate status --all` with 10,000 hosts x 4 phases, each a new
    process as an operator runs it, our modules from cached bytecode as installed
    (--cold: compiled on every run) (goal: at most 1 s each);
(c) one poll cycle of 3 `prometheus` metrics over 10,000 hosts (TriggerMonitor.cycle,
    samples journaled on the same PostgreSQL) against a real Prometheus holding 30,000
    series (10,000 hosts x 3 DCGM series, served by bench/fleet.py's server), with the
    number of queries Prometheus answered per cycle (goal: one per metric; at most 1 s);
(d) the controller's memory: peak RSS of this process over (a) and (c) (goal: at most
    500 MB).

Run: python bench/scale.py [--hosts 10000] [--cycles 5] [--only abc] [--cold]
Needs root (PostgreSQL runs as the postgres user), Debian's postgresql and prometheus.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import answered, cycle_spans, host_names  # noqa: E402

STEPS = 3
METRICS = (("vram", "DCGM_FI_DEV_FB_USED"), ("util", "DCGM_FI_DEV_GPU_UTIL"),
           ("temp", "DCGM_FI_DEV_GPU_TEMP"))
PLAY = "- hosts: all\n  gather_facts: false\n  tasks: []\n"


def rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_project(root: Path, n: int, url: str, metrics: str = "", prom: str = "") -> Path:
    (root / "phases").mkdir(parents=True)
    (root / "playbooks").mkdir()
    (root / "inventory").mkdir()
    for k in range(1, STEPS + 1):
        (root / "playbooks" / f"s{k}.yml").write_text(PLAY)
    triggers = "".join(f"  t_{m}: {{metric: {m}, above: 100000}}\n" for m, _ in METRICS) \
        if metrics else ""
    (root / "migration.yaml").write_text(
        "name: scale\ninventory: inventory/hosts.yml\npoll_interval: 5s\n"
        f"state: {{url: '{url}'}}\n"
        + (f"prometheus: {{url: '{prom}'}}\n" if prom else "")
        + (f"metrics:\n{metrics}" if metrics else "metrics: {}\n")
        + (f"triggers:\n{triggers}" if triggers else "triggers: {}\n"))
    (root / "inventory" / "hosts.yml").write_text(
        "all:\n  vars:\n    ansible_connection: local\n  hosts:\n"
        + "".join(f"    {h}:\n" for h in host_names(n)))
    steps = "".join(f"  - id: s{k}\n    playbook: playbooks/s{k}.yml\n    rollback: none\n"
                    for k in range(1, STEPS + 1))
    watched = "" if metrics else "triggers: []\n"  # (c) watches every trigger
    (root / "phases" / "1-p1.yaml").write_text(
        f"phase: 1\nname: p1\nwaves: [100%]\n{watched}steps:\n{steps}")
    for k in (2, 3, 4):
        (root / "phases" / f"{k}-p{k}.yaml").write_text(
            f"phase: {k}\nname: p{k}\nrequires: [{k - 1}]\nsteps:\n  - id: w\n    wait: 1s\n")
    return root


def db_counters(server: Any, db: str) -> dict[str, int]:
    out = server.psql("SELECT pg_stat_clear_snapshot(); SELECT xact_commit, tup_inserted, "
                      f"tup_updated, tup_deleted FROM pg_stat_database WHERE datname = '{db}'",
                      db=db).strip().splitlines()[-1]
    commit, ins, upd, dele = (int(x) for x in out.split("|"))
    return {"commits": commit, "rows": ins + upd + dele}


def server_cpu(server: Any) -> float:
    """CPU seconds (user + system) of the PostgreSQL cluster so far: every live process of
    it, and the backends that ended (reaped by the postmaster, so in its children's
    time). The server's share of the journal's cost, whatever the machine's load."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])

    def times(pid: int | str) -> list[int]:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
        return [int(x) for x in text[text.rindex(")") + 2:].split()[1:15]]

    mine = times(postmaster)
    ticks = sum(mine[10:14])  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                child = times(entry)
            except (OSError, ValueError):
                continue
            if child[0] == postmaster:
                ticks += child[10] + child[11]
    return ticks / os.sysconf("SC_CLK_TCK")


def settled_counters(server: Any, db: str) -> dict[str, int]:
    """pg_stat_database once it has stopped moving (statistics are flushed lazily)."""
    last = db_counters(server, db)
    for _ in range(20):
        time.sleep(0.6)
        now = db_counters(server, db)
        if now == last:
            return now
        last = now
    return last


# --- (a) --------------------------------------------------------------------------------------
def bench_a(root: Path, server: Any, db: str) -> dict[str, Any]:
    from orchestrator.app import App
    from orchestrator.core.clock import CancelToken, SystemClock
    from orchestrator.engine.context import EngineParts
    from orchestrator.engine.lifecycle import RunLifecycle
    from orchestrator.engine.phase_run import FleetPlan
    from orchestrator.runners.fake import FakeCommandRunner, FakePlaybookRunner

    t0 = time.perf_counter()
    app = App(root)
    project, inventory = app.load()
    journal = app.journal
    loaded = time.perf_counter() - t0
    hosts = list(inventory.hosts.values())
    playbooks = FakePlaybookRunner()
    parts = EngineParts(journal=journal, playbooks=playbooks, commands=FakeCommandRunner(),
                        clock=SystemClock(), forks=project.forks)
    lifecycle = RunLifecycle(project, inventory, parts)
    before = settled_counters(server, db)
    wall0, cpu0, pg0 = time.perf_counter(), time.process_time(), server_cpu(server)
    report = lifecycle.run_phase(project.phases[1], hosts, "bench", CancelToken(), False,
                                 FleetPlan(("100%",), 0, "wave"))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    pg_cpu = server_cpu(server) - pg0
    after = settled_counters(server, db)
    assert report.outcome.value == "completed", report.outcome
    assert len(playbooks.requests) == STEPS and all(
        len(r.hosts) == len(hosts) for r in playbooks.requests), "one request per step"
    app.close()
    per = len(hosts) * STEPS
    return {"load_s": loaded, "wall_s": wall, "cpu_s": cpu, "per_host_step_us": wall / per * 1e6,
            "cpu_per_host_step_us": cpu / per * 1e6, "pg_cpu_s": pg_cpu,
            "pg_cpu_per_host_step_us": pg_cpu / per * 1e6,
            "commits": after["commits"] - before["commits"],
            "rows": after["rows"] - before["rows"], "host_steps": per}


def fill_later_phases(url: str, root: Path, n: int, phases: tuple[int, ...] = (2, 3, 4)) -> None:
    """Phases completed on every host, as runs would leave them (status shows 4)."""
    from orchestrator.core.states import PhaseState
    from orchestrator.state.open import StateSettings, open_state

    journal = open_state(root / ".migrate", StateSettings(url=url))
    journal.use_migration("scale")
    names = host_names(n)
    for k in phases:
        run_id = f"fill-{k}"
        journal.create_run(run_id, k, names, "bench", "phase", False, {})
        with journal.batch():
            for h in names:
                journal.move_phase(run_id, h, k, PhaseState.RUNNING, "run_started", "bench")
                journal.move_phase(run_id, h, k, PhaseState.COMPLETED, "phase_completed", "ok")
        journal.end_run(run_id, "completed")
    journal.close()


# --- (b) --------------------------------------------------------------------------------------
def child_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def timed(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, str, float]:
    """Median wall time, the last output, and the median CPU time (user + system) of the
    command: on a machine shared with other work the CPU time is the steadier figure."""
    times, cpus, out = [], [], ""
    for _ in range(runs):
        t0, c0 = time.perf_counter(), child_cpu()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        cpus.append(child_cpu() - c0)
        assert res.returncode == 0, res.stderr[-2000:]
        out = res.stdout
    return statistics.median(times), out, statistics.median(cpus)


def bench_b(root: Path, n: int, runs: int, bytecode: Path | None) -> dict[str, float]:
    """Each command a new process; our modules from cached bytecode as an installed
    package's are (a cache of their own, filled by a warm-up run), unless `bytecode` is
    None (--cold: every module compiled on every run, as an editable checkout under
    PYTHONDONTWRITEBYTECODE)."""
    base = [sys.executable, "-m", "orchestrator", "--project", str(root)]
    env = dict(os.environ)
    if bytecode is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(bytecode)
        timed(base + ["status", "--all"], 1, env)
    status, _, status_cpu = timed(base + ["status"], runs, env)
    status_json, out, json_cpu = timed(base + ["--output", "json", "status"], runs, env)
    doc = json.loads(out)
    assert len(doc["hosts"]) == n and all(
        p["state"] == "completed" for h in doc["hosts"].values() for p in h["phases"].values())
    every, _, every_cpu = timed(base + ["status", "--all"], runs, env)
    return {"status": status, "status_json": status_json, "status_all": every,
            "status_cpu": status_cpu, "status_json_cpu": json_cpu, "status_all_cpu": every_cpu}


# --- (c) --------------------------------------------------------------------------------------
def fleet_server(n: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fleet.py"), "--serve", str(n)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"127.0.0.1:{int(proc.stdout.readline())}"


def head_series(prom: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{prom}/api/v1/status/tsdb", timeout=10) as resp:
        return int(json.loads(resp.read())["data"]["headStats"]["numSeries"])


def bench_c(tmp: Path, url: str, n: int, cycles: int, label: str) -> dict[str, Any]:
    from orchestrator.config.project import load_project
    from orchestrator.core.bus import RunBus
    from orchestrator.core.clock import SystemClock
    from orchestrator.monitor.trigger_monitor import TriggerMonitor
    from orchestrator.state.open import StateSettings, open_state
    from tests.support.prom import prometheus_with

    server, target = fleet_server(n)
    try:
        scrape = ("  - job_name: dcgm\n    scrape_interval: 5s\n    scrape_timeout: 5s\n"
                  f"    static_configs: [{{targets: ['{target}']}}]\n")
        with prometheus_with(tmp / f"prom-{label}", scrape,
                             f"count(DCGM_FI_DEV_GPU_TEMP) >= {n}", lookback="12s") as prom:
            if label == "host_label":
                metrics = "".join(f"  {m}:\n    source: prometheus\n    query: 'sum by "
                                  f"(Hostname) ({s})'\n    host_label: Hostname\n"
                                  for m, s in METRICS)
            else:
                metrics = "".join(f"  {m}:\n    source: prometheus\n    query: 'sum({s}"
                                  f"{{Hostname=\"{{{{ host }}}}\"}})'\n" for m, s in METRICS)
            root = write_project(tmp / f"c-{label}", n, url, metrics, prom)
            project, inventory = load_project(root)
            journal = open_state(root / ".migrate", StateSettings(url=url))
            journal.use_migration("scale")
            hosts = list(inventory.hosts.values())
            journal.create_run(f"poll-{label}", 1, [h.name for h in hosts], "bench", "phase",
                               False, {})
            monitor = TriggerMonitor(project, inventory, journal, SystemClock(), None)
            monitor.prepare(RunBus(f"poll-{label}"), project.phases[1], hosts, False)
            series = head_series(prom)
            before = answered(prom)
            spans, cpus = cycle_spans(monitor, cycles, 0.5, cpu=True)
            queries = (answered(prom) - before) / (cycles + 1)
            # counted by the database: reading 30,000 rows a cycle back into this process
            # would count the bench's own check in the controller's peak RSS (d)
            ((count, nodata),) = journal.store.read(
                "SELECT COUNT(*), COUNT(*) - COUNT(value) FROM samples WHERE run_id = ?",
                (f"poll-{label}",))
            journal.close()
    finally:
        server.terminate()
        server.wait(10)
    return {"first": spans[0], "median": statistics.median(spans[1:]), "queries": queries,
            "cpu": statistics.median(cpus[1:]), "series": series, "samples": count,
            "nodata": nodata}


# --- main -------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="abc")
    ap.add_argument("--cold", action="store_true",
                    help="(b) without cached bytecode: every module compiled on every run")
    args = ap.parse_args()
    from tests.support.pg import running_server

    peak = {"mb": 0.0}
    stop = threading.Event()

    def watch_rss() -> None:  # current RSS, sampled: ru_maxrss also counts bench setup
        while not stop.wait(0.2):
            try:
                with open(f"/proc/{os.getpid()}/status") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            peak["mb"] = max(peak["mb"], int(line.split()[1]) / 1024)
            except OSError:
                return

    def report(what: str, got: str, goal: str = "") -> None:
        print(f"{what:64} {got:>14}   {goal}", flush=True)

    n = args.hosts
    with tempfile.TemporaryDirectory() as tmp_name, running_server(fsync=True) as server:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)
        url = server.create_database("scale")
        root = write_project(tmp / "a", n, url)
        print(f"{n} hosts, journal on PostgreSQL ({url}), fake runners; "
              f"python {sys.version.split()[0]}")
        threading.Thread(target=watch_rss, daemon=True).start()
        if "a" in args.only:
            a = bench_a(root, server, "scale")
            report(f"(a) phase of {STEPS} playbook steps, one wave of {n}: wall (CPU)",
                   f"{a['wall_s']:.2f} s ({a['cpu_s']:.2f})")
            report("(a)   engine time per host per step (wall)",
                   f"{a['per_host_step_us']:.0f} us")
            report("(a)   engine time per host per step (CPU)",
                   f"{a['cpu_per_host_step_us']:.0f} us")
            report("(a)   journal server CPU per host per step (PostgreSQL)",
                   f"{a['pg_cpu_per_host_step_us']:.0f} us")
            report("(a)   journal transactions per host per step",
                   f"{a['commits'] / a['host_steps']:.3f}")
            report("(a)   journal rows written per host per step",
                   f"{a['rows'] / a['host_steps']:.2f}")
            report("(a)   project + inventory load", f"{a['load_s']:.2f} s")
            report("(d) controller RSS during the phase (peak)", f"{peak['mb']:.0f} MB",
                   "goal <= 500 MB")
        if "b" in args.only:
            fill_later_phases(url, root, n, (2, 3, 4) if "a" in args.only else (1, 2, 3, 4))
            b = bench_b(root, n, args.runs, None if args.cold else tmp / "bytecode")
            for key, what in (("status", f"migrate status, {n} hosts x 4 phases"),
                              ("status_json", "migrate --output json status"),
                              ("status_all", "migrate status --all")):
                report(f"(b) {what}: wall (CPU)",
                       f"{b[key]:.3f} s ({b[key + '_cpu']:.3f})", "goal <= 1 s")
        if "c" in args.only:
            for label in ("templated", "host_label"):
                c = bench_c(tmp, url, n, args.cycles, label)
                report(f"(c) poll cycle, 3 prometheus metrics x {n} ({label}): first",
                       f"{c['first']:.3f} s")
                report("(c)   median of the next cycles: wall", f"{c['median']:.3f} s",
                       "goal <= 1 s")
                report("(c)   median of the next cycles: CPU of this process",
                       f"{c['cpu']:.3f} s", "(Prometheus's and PostgreSQL's own not counted)")
                report("(c)   queries Prometheus answered per cycle", f"{c['queries']:.1f}",
                       "goal: 3 (one per metric)")
                report("(c)   series in Prometheus; samples journaled; no data",
                       f"{c['series']}; {c['samples']}; {c['nodata']}")
            report("(d) controller RSS over the phase and the cycles (peak)",
                   f"{peak['mb']:.0f} MB", "goal <= 500 MB")
        stop.set()


if __name__ == "__main__":
    main()
