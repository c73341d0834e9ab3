"""Fleet benchmark (issue 12): migrate at 200 hosts, and its poll cycle at 2,000.

A benchmark, not a test: it prints figures next to their goals. Every host is a
local-connection inventory host; each has its own metrics, all served by one small
threaded HTTP server running in a process of its own (so that serving does not
share a GIL with what is measured): per-host JSON at /h/<host> (also at /a/, /b/,
/c/ for metrics that must not share a URL) and every host's DCGM-style series at
/metrics.

(a) a 3-step phase (three playbook steps) on 200 hosts, `migrate phase` in a
    subprocess, against the same three playbooks run by bare `ansible-playbook` with
    the same forks (goal: at most 1.05x). Wall time means something only on a quiet
    machine; the CPU of every process each side starts is the figure under load, and
    the migrate process's own CPU (read from /proc as it exits, apart from its Ansible
    children's) is what is ours;
(b) the wall time of a phase of one 1 s `wait` on 200 hosts with two triggers on
    phase-start baselines (goal: at most 5 s);
(c) the poll-cycle span at 200 hosts x 3 http metrics (goal: at most 1 s), and through
    a real Prometheus (/usr/bin/prometheus, scraping the one server that serves every
    host's series) at 2,000 hosts x 3 metrics (goal: at most 1 s per cycle), with the
    number of queries Prometheus answered per cycle;
(d) `migrate status` with 200 hosts x 4 phases (goal: at most 0.5 s);
(e) the CPU migrate's local runner spends a second while 200 local commands run (each
    waits in waitpid; one thread per command wakes twice a second for the cancel token
    and the deadline).

Run: python bench/fleet.py [--hosts 200] [--prom-hosts 2000] [--only abcd] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import answered, cycle_spans, host_names, serve_forever, served_by  # noqa: E402

FORKS = 50
PLAYBOOK = """\
- name: fleet step {n}
  hosts: all
  gather_facts: false
  tasks:
    - name: marker
      ansible.builtin.file:
        path: "{{{{ marker_dir }}}}/{{{{ inventory_hostname }}}}-s{n}"
        state: touch
        mode: "0644"
"""


# --- the metrics server (a process of its own) -------------------------------------------------
def serve(n_hosts: int) -> None:
    """`fleet.py --serve N`: serve N hosts' metrics; print the port, run until killed."""
    names = host_names(n_hosts)
    docs = {name: json.dumps({"status": "ok", "vram": 1000 + i % 97, "load": 1 + i % 7,
                              "temp": 40 + i % 13}).encode()
            for i, name in enumerate(names)}
    exposition = "".join(
        f'DCGM_FI_DEV_FB_USED{{Hostname="{n}",gpu="0"}} {1000 + i % 97}\n'
        f'DCGM_FI_DEV_GPU_UTIL{{Hostname="{n}",gpu="0"}} {i % 100}\n'
        f'DCGM_FI_DEV_GPU_TEMP{{Hostname="{n}",gpu="0"}} {40 + i % 13}\n'
        for i, n in enumerate(names)).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            if self.path == "/metrics":
                body = exposition
            else:
                body = docs.get(self.path.rsplit("/", 1)[-1], b"{}")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    serve_forever(Handler)


def metrics_server(n_hosts: int) -> AbstractContextManager[str]:
    return served_by(__file__, n_hosts)


# --- projects ----------------------------------------------------------------------------------
def write_project(root: Path, hosts: list[str], url: str, metrics: str, triggers: str,
                  phases: dict[int, str], poll: str = "1s") -> Path:
    (root / "phases").mkdir(parents=True)
    (root / "playbooks").mkdir()
    (root / "inventory").mkdir()
    (root / "markers").mkdir()
    for n in (1, 2, 3):
        (root / "playbooks" / f"s{n}.yml").write_text(PLAYBOOK.format(n=n))
    (root / "migration.yaml").write_text(
        f"name: fleet\ninventory: inventory/hosts.yml\npoll_interval: {poll}\n"
        f"forks: {FORKS}\n"
        + (f"metrics:\n{metrics}" if metrics else "metrics: {}\n")
        + (f"triggers:\n{triggers}" if triggers else "triggers: {}\n"))
    (root / "inventory" / "hosts.yml").write_text(
        "all:\n  vars:\n    ansible_connection: local\n"
        "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n"
        f"    marker_dir: {root / 'markers'}\n    fleet: {url}\n  hosts:\n"
        + "".join(f"    {h}:\n" for h in hosts))
    for number, body in phases.items():
        (root / "phases" / f"{number}-p{number}.yaml").write_text(body)
    return root


def migrate(root: Path, *args: str, timeout: float = 1800) -> tuple[float, str]:
    took, out, _ = migrate_measured(root, *args, timeout=timeout)
    return took, out


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of one process: its own (every thread) and its waited-for children's."""

    own: float
    children: float

    @property
    def total(self) -> float:
        return self.own + self.children


def _cpu_at_exit(proc: subprocess.Popen[str], timeout: float) -> Cpu:
    """The process's CPU as its exit left it: /proc/PID/stat read while it is a zombie
    (Popen reaps it only at wait()), so its own utime+stime apart from its children's."""
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = Path(f"/proc/{proc.pid}/stat").read_text()
        except OSError:
            raw = ""
        fields = raw[raw.rfind(")") + 2:].split()
        if fields and fields[0] == "Z":
            utime, stime, cutime, cstime = (int(f) / tick for f in fields[11:15])
            return Cpu(utime + stime, cutime + cstime)
        if not fields or time.monotonic() > deadline:
            return Cpu(math.nan, math.nan)
        time.sleep(0.02)


def migrate_measured(root: Path, *args: str, timeout: float = 1800) -> tuple[float, str, Cpu]:
    """Wall time, stdout and CPU (migrate's own apart from its Ansible children's)."""
    entry = Path(sys.executable).parent / "migrate"
    cmd = [str(entry)] if entry.exists() else [sys.executable, "-m", "orchestrator"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([*cmd, "--project", str(root), *args], stdout=out, stderr=err,
                                text=True, stdin=subprocess.DEVNULL)
        cpu = _cpu_at_exit(proc, timeout)
        proc.wait(timeout=timeout)
        took = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"migrate {' '.join(args)} exited {proc.returncode}:\n"
                         f"{stderr[-3000:]}")
    return took, stdout, cpu


HTTP_TWO = ("  vram:\n    source: http\n    url: '{{ vars.fleet }}/h/{{ host }}'\n"
            "    field: vram\n"
            "  load:\n    source: http\n    url: '{{ vars.fleet }}/h/{{ host }}'\n"
            "    field: load\n")
TRIGGERS_TWO = ("  vram_degradation: {metric: vram, degrade_pct: 20, baseline: phase-start}\n"
                "  load_degradation: {metric: load, degrade_pct: 50, baseline: phase-start}\n")


# --- (a) --------------------------------------------------------------------------------------
def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def bench_a(tmp: Path, url: str, n: int, runs: int) -> dict[str, float]:
    """Wall and CPU time (of every process each side starts) of migrate and of bare
    ansible-playbook, back-to-back, alternating which goes first: on a machine loaded by
    others the ratio of two neighbouring measures is what means something."""
    hosts = host_names(n)
    steps = "".join(f"  - id: s{k}\n    playbook: playbooks/s{k}.yml\n    rollback: none\n"
                    for k in (1, 2, 3))
    phase = f"phase: 1\nname: three steps\ntriggers: []\nsteps:\n{steps}"
    mig, bare, mig_cpu, bare_cpu, ratios, cpu_ratios = [], [], [], [], [], []
    own, own_share = [], []
    for r in range(runs):
        root = write_project(tmp / f"a{r}", hosts, url, "", "", {1: phase})

        def run_migrate(root: Path = root) -> tuple[float, float]:
            cpu0 = _children_cpu()
            took, _, cpu = migrate_measured(root, "phase", "1", "--host", "all", "--yes")
            done = len(list((root / "markers").iterdir()))
            assert done == 3 * n, f"migrate left {done} markers, not {3 * n}"
            shutil.rmtree(root / "markers")
            (root / "markers").mkdir()
            own.append(cpu.own)
            own_share.append(cpu.own / cpu.total)
            return took, _children_cpu() - cpu0

        def run_bare(root: Path = root) -> tuple[float, float]:
            cpu0 = _children_cpu()
            t0 = time.perf_counter()
            for k in (1, 2, 3):
                subprocess.run(["ansible-playbook", "-i", str(root / "inventory" / "hosts.yml"),
                                "--forks", str(FORKS), str(root / "playbooks" / f"s{k}.yml")],
                               check=True, stdout=subprocess.DEVNULL, cwd=root,
                               env=dict(os.environ, ANSIBLE_RETRY_FILES_ENABLED="0",
                                        ANSIBLE_NOCOLOR="1"))
            took = time.perf_counter() - t0
            shutil.rmtree(root / "markers")
            (root / "markers").mkdir()
            return took, _children_cpu() - cpu0

        if r % 2 == 0:
            (m, mc), (b, bc) = run_migrate(), run_bare()
        else:
            (b, bc), (m, mc) = run_bare(), run_migrate()
        mig.append(m)
        bare.append(b)
        mig_cpu.append(mc)
        bare_cpu.append(bc)
        ratios.append(m / b)
        cpu_ratios.append(mc / bc)
        print(f"    run {r + 1}: migrate {m:.1f} s ({mc:.1f} CPU s, {own[-1]:.2f} of them "
              f"migrate's own), bare {b:.1f} s ({bc:.1f} CPU s): {m / b:.3f}x wall, "
              f"{mc / bc:.3f}x CPU, load {os.getloadavg()[0]:.1f}", flush=True)
    return {"migrate": statistics.median(mig), "bare": statistics.median(bare),
            "migrate_cpu": statistics.median(mig_cpu), "bare_cpu": statistics.median(bare_cpu),
            "ratio": statistics.median(ratios), "cpu_ratio": statistics.median(cpu_ratios),
            "own_cpu": statistics.median(own), "own_share": statistics.median(own_share)}


# --- (b) --------------------------------------------------------------------------------------
def bench_b(tmp: Path, url: str, n: int, runs: int) -> float:
    hosts = host_names(n)
    phase = "phase: 1\nname: one wait\nsteps:\n  - id: soak\n    wait: 1s\n"
    took = []
    for r in range(runs):
        root = write_project(tmp / f"b{r}", hosts, url, HTTP_TWO, TRIGGERS_TWO, {1: phase})
        took.append(migrate(root, "phase", "1", "--host", "all", "--yes")[0])
    return statistics.median(took)


# --- (c) --------------------------------------------------------------------------------------
def cycle_span(root: Path, cycles: int) -> tuple[float, float, Any]:
    """(first cycle, median of the next ones) of TriggerMonitor.cycle, with the journal."""
    from orchestrator.config.project import load_project
    from orchestrator.core.bus import RunBus
    from orchestrator.core.clock import SystemClock
    from orchestrator.monitor.trigger_monitor import TriggerMonitor
    from orchestrator.state.journal import Journal

    project, inventory = load_project(root)
    journal = Journal(root / "state.db")
    monitor = TriggerMonitor(project, inventory, journal, SystemClock(), None)
    monitor.prepare(RunBus("bench"), project.phases[1], list(inventory.hosts.values()), False)
    spans = cycle_spans(monitor, cycles, 0.2)
    samples = journal.samples("bench")
    journal.close()
    nodata = sum(1 for s in samples if s["value"] is None)
    return spans[0], statistics.median(spans[1:]), (len(samples), nodata, monitor)


def bench_c_http(tmp: Path, url: str, n: int, shared: bool) -> tuple[float, float, Any]:
    paths = ("h", "h", "h") if shared else ("a", "b", "c")
    metrics = "".join(
        f"  m{k}:\n    source: http\n    url: '{{{{ vars.fleet }}}}/{p}/{{{{ host }}}}'\n"
        f"    field: {f}\n" for k, (p, f) in enumerate(zip(paths, ("vram", "load", "temp"),
                                                          strict=True)))
    triggers = "".join(f"  t{k}: {{metric: m{k}, above: 100000}}\n" for k in range(3))
    root = write_project(tmp / f"c-http-{'shared' if shared else 'distinct'}",
                         host_names(n), url, metrics, triggers,
                         {1: "phase: 1\nsteps:\n  - id: w\n    wait: 1s\n"})
    return cycle_span(root, 5)


def bench_c_prometheus(tmp: Path, n: int) -> dict[str, float]:
    from tests.support.prom import prometheus

    with metrics_server(n) as url:
        (tmp / "prom").mkdir()
        with prometheus(tmp / "prom", url.removeprefix("http://"),
                        "DCGM_FI_DEV_GPU_TEMP") as prom:
            metrics = "".join(
                f"  {m}:\n    source: prometheus\n"
                f"    query: 'sum({s}{{Hostname=\"{{{{ host }}}}\"}})'\n"
                for m, s in (("vram", "DCGM_FI_DEV_FB_USED"), ("util", "DCGM_FI_DEV_GPU_UTIL"),
                             ("temp", "DCGM_FI_DEV_GPU_TEMP")))
            triggers = "".join(f"  t_{m}: {{metric: {m}, above: 100000}}\n"
                               for m in ("vram", "util", "temp"))
            root = write_project(tmp / "c-prom", host_names(n), url, metrics, triggers,
                                 {1: "phase: 1\nsteps:\n  - id: w\n    wait: 1s\n"})
            text = (root / "migration.yaml").read_text()
            (root / "migration.yaml").write_text(text + f"prometheus: {{url: '{prom}'}}\n")
            before = answered(prom)
            first, median, (rows, nodata, _) = cycle_span(root, 5)
            queries = (answered(prom) - before) / 6
    return {"first": first, "median": median, "queries": queries, "rows": rows,
            "nodata": nodata}


# --- (d) --------------------------------------------------------------------------------------
def bench_d(tmp: Path, url: str, n: int, runs: int) -> tuple[float, float, dict[str, float]]:
    hosts = host_names(n)
    phases = {k: f"phase: {k}\nname: p{k}\n" + (f"requires: [{k - 1}]\n" if k > 1 else "")
              + "steps:\n  - id: w\n    wait: 100ms\n" for k in (1, 2, 3, 4)}
    root = write_project(tmp / "d", hosts, url, HTTP_TWO, TRIGGERS_TWO, phases)
    runs_took = {}
    for k in (1, 2, 3, 4):
        runs_took[f"phase {k}"] = migrate(root, "phase", str(k), "--host", "all", "--yes")[0]
    text, js = [], []
    for _ in range(runs):
        text.append(migrate(root, "status")[0])
        took, out = migrate(root, "--output", "json", "status")
        js.append(took)
    doc = json.loads(out)
    assert len(doc["hosts"]) == n and all(
        p["state"] == "completed" for h in doc["hosts"].values() for p in h["phases"].values())
    return statistics.median(text), statistics.median(js), runs_took


# --- (e) --------------------------------------------------------------------------------------
def bench_e(tmp: Path, n: int) -> float:
    """CPU seconds a second of LocalCommandRunner over n concurrent local commands: the
    CPU of n x `sleep 6` less that of n x `sleep 1`, over the 5 s between them."""
    import threading

    from orchestrator.config.inventory import Host
    from orchestrator.core.clock import CancelToken
    from orchestrator.runners.base import CommandRequest
    from orchestrator.runners.local import LocalCommandRunner

    def cpu(seconds: int) -> float:
        runner, cancel = LocalCommandRunner(), CancelToken()
        requests = [CommandRequest(Host(h, {"ansible_connection": "local"}),
                                   f"sleep {seconds}", tmp / "e") for h in host_names(n)]
        threads = [threading.Thread(target=runner.run_command, args=(r, cancel))
                   for r in requests]
        c0 = time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.process_time() - c0

    return (cpu(6) - cpu(1)) / 5


def python_startup() -> float:
    out = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--prom-hosts", type=int, default=2000)
    ap.add_argument("--only", default="abcde")
    ap.add_argument("--runs", type=int, default=1, help="runs of (a) and (b); median shown")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    n = args.hosts
    load = os.getloadavg()[0]
    print(f"fleet benchmark: {n} local hosts, forks {FORKS}, {os.cpu_count()} cores, "
          f"load average {load:.1f} at start, python -c pass {python_startup():.3f} s")
    rows: list[tuple[str, str, str]] = []

    def report(what: str, got: str, goal: str) -> None:
        rows.append((what, got, goal))
        print(f"  {what:<58} {got:>22}   goal {goal}", flush=True)

    with tempfile.TemporaryDirectory(prefix="migrate-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        with metrics_server(n) as url:
            if "a" in args.only:
                a = bench_a(tmp, url, n, args.runs)
                report(f"(a) 3 playbook steps x {n} hosts: migrate phase",
                       f"{a['migrate']:.1f} s ({a['migrate_cpu']:.1f} CPU s)", "")
                report(f"(a) the same 3 playbooks, bare ansible-playbook --forks {FORKS}",
                       f"{a['bare']:.1f} s ({a['bare_cpu']:.1f} CPU s)", "")
                report("(a) ratio migrate / bare, wall (median of runs)",
                       f"{a['ratio']:.3f}x", "<= 1.05x")
                report("(a) ratio migrate / bare, CPU of all their processes",
                       f"{a['cpu_ratio']:.3f}x", "<= 1.05x (on a loaded machine)")
                report("(a) CPU of the migrate process itself (beside its Ansible)",
                       f"{a['own_cpu']:.2f} s ({100 * a['own_share']:.1f} %)", "")
            if "b" in args.only:
                b = bench_b(tmp, url, n, args.runs)
                report(f"(b) phase of one 1 s wait, {n} hosts, 2 baselined triggers",
                       f"{b:.2f} s", "<= 5 s")
            if "c" in args.only:
                for shared in (False, True):
                    first, median, (samples, nodata, _) = bench_c_http(tmp, url, n, shared)
                    what = "3 URLs per host" if not shared else "3 metrics on 1 URL per host"
                    report(f"(c) poll cycle {n} x 3 http ({what})",
                           f"{median:.3f} s (1st {first:.2f})", "<= 1 s")
                    assert nodata == 0, f"{nodata} of {samples} samples had no data"
            if "d" in args.only:
                text, js, took = bench_d(tmp, url, n, max(3, args.runs))
                report(f"(d) migrate status, {n} hosts x 4 phases", f"{text:.3f} s", "<= 0.5 s")
                report("(d) migrate --output json status", f"{js:.3f} s", "<= 0.5 s")
                report(f"    (4 phases of one 100ms wait on {n} hosts took)",
                       ", ".join(f"{v:.1f}" for v in took.values()) + " s", "")
            if "e" in args.only:
                report(f"(e) local runner, {n} commands running: CPU a second",
                       f"{bench_e(tmp, n):.3f} s", "")
        if "c" in args.only and args.prom_hosts:
            p = bench_c_prometheus(tmp, args.prom_hosts)
            report(f"(c) poll cycle {args.prom_hosts} x 3 prometheus metrics",
                   f"{p['median']:.3f} s (1st {p['first']:.2f})", "<= 1 s")
            report("(c) queries Prometheus answered per cycle", f"{p['queries']:.1f}",
                   "3 (not 6,000)")
            assert p["nodata"] == 0, f"{p['nodata']} of {p['rows']} samples had no data"
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    if re.search(r"\bpytest\b", " ".join(sys.argv)):
        raise SystemExit("a benchmark, not a test")
    main()
