"""What `migrate watch` costs the machine it runs on (issue 30): CPU and memory.

`migrate watch --host all` over N hosts (default 200) whose phase 1 is completed, each
host with 3 `http` metrics at a 1 s poll: two fields of one JSON document
(`/h/<host>`, fetched once per cycle for both) and one of another (`/g/<host>`), so
400 HTTP reads a second at 200 hosts. One local server process serves every host's
endpoints (HTTP/1.1, keep-alive), so what is measured is the watch alone.

After a warm-up, the watch's own CPU time (user + system, /proc/PID/stat) is sampled
over a window and divided by the window: the share of one core. The watch sleeps a
poll interval after each cycle, so a slow cycle lowers that share; the cycles in the
window are counted from the journal's samples and the CPU per cycle is printed too,
with the share it makes at exactly one cycle a second (the figure held to the goal).
Memory is the peak resident set (VmHWM). The machine is shared: the load average is
printed beside.

Goals: at most 8% of one core and 100 MB.

Run: python bench/watch_cpu.py [--hosts 200] [--warmup 10] [--window 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from _common import host_names, serve_forever, served_by

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
GOAL_CPU_PCT = 8.0
GOAL_RSS_MB = 100.0


def serve(n_hosts: int) -> None:
    """`watch_cpu.py --serve N`: every host's /h/ and /g/ documents; print the port."""
    docs = {}
    for i, name in enumerate(host_names(n_hosts)):
        docs[f"/h/{name}"] = json.dumps({"status": "ok", "vram": 1000 + i % 97,
                                         "load": 1 + i % 7}).encode()
        docs[f"/g/{name}"] = json.dumps({"temp": 40 + i % 13}).encode()

    def answer(status: str, body: bytes) -> bytes:
        return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    answers = {path: answer("200 OK", body) for path, body in docs.items()}
    missing = answer("404 Not Found", b"{}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a client that pools reuses them

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            # one write per answer: headers and body in separate segments meet Nagle and
            # the client's delayed ACK (40 ms a read), which measures the server, not us
            self.wfile.write(answers.get(self.path, missing))

    serve_forever(Handler)


def endpoint_server(n_hosts: int) -> AbstractContextManager[str]:
    return served_by(__file__, n_hosts)


def write_project(root: Path, hosts: list[str], url: str) -> Path:
    (root / "phases").mkdir(parents=True)
    (root / "inventory").mkdir()
    metrics = ("  vram:\n    source: http\n    url: '{{ vars.fleet }}/h/{{ host }}'\n"
               "    field: vram\n"
               "  load:\n    source: http\n    url: '{{ vars.fleet }}/h/{{ host }}'\n"
               "    field: load\n"
               "  temp:\n    source: http\n    url: '{{ vars.fleet }}/g/{{ host }}'\n"
               "    field: temp\n")
    triggers = ("  vram_high: {metric: vram, above: 100000}\n"
                "  load_high: {metric: load, above: 100000}\n"
                "  temp_high: {metric: temp, above: 100000}\n")
    (root / "migration.yaml").write_text(
        "name: watch-cpu\ninventory: inventory/hosts.yml\npoll_interval: 1s\n"
        f"metrics:\n{metrics}triggers:\n{triggers}")
    (root / "inventory" / "hosts.yml").write_text(
        "all:\n  vars:\n    ansible_connection: local\n"
        f"    fleet: {url}\n  hosts:\n" + "".join(f"    {h}:\n" for h in hosts))
    (root / "phases" / "1-soak.yaml").write_text(
        "phase: 1\nname: soak\nsteps:\n  - id: soak\n    wait: 1s\n")
    return root


def migrate_cmd() -> list[str]:
    return [sys.executable, "-m", "orchestrator"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def samples(root: Path) -> int:
    """Samples journaled so far (one per host and trigger a cycle)."""
    import sqlite3

    db = sqlite3.connect(f"file:{root / '.migrate' / 'state.db'}?mode=ro", uri=True,
                         timeout=10)
    try:
        return int(db.execute("SELECT count(*) FROM samples").fetchone()[0])
    finally:
        db.close()


def measure(root: Path, warmup: float, window: float, per_cycle: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([*migrate_cmd(), "--project", str(root), "phase", "1", "--host", "all",
                    "--yes"], check=True, capture_output=True, env=env,
                   stdin=subprocess.DEVNULL, timeout=600)
    total = warmup + window + 15  # room for a slow start; the window is what is measured
    proc = subprocess.Popen([*migrate_cmd(), "--project", str(root), "--output", "json",
                             "watch", "--host", "all", "--for", f"{total:g}s"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        time.sleep(warmup)
        first = samples(root)  # past startup (slow on a loaded machine): two cycles seen
        while samples(root) < first + 2 * per_cycle and proc.poll() is None:
            time.sleep(0.2)
        cpu0, t0, n0 = cpu_seconds(proc.pid), time.monotonic(), samples(root)
        load0 = os.getloadavg()[0]
        time.sleep(window)
        cpu1, t1, n1 = cpu_seconds(proc.pid), time.monotonic(), samples(root)
        rss_mb = status_kb(proc.pid, "VmHWM") / 1024
        out, _ = proc.communicate(timeout=total + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = json.loads(out)
    cycles = (n1 - n0) / per_cycle
    return {"cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0), "rss_mb": rss_mb,
            "cycles_per_s": cycles / (t1 - t0),
            "cpu_ms_per_cycle": 1000 * (cpu1 - cpu0) / max(cycles, 1e-9),
            "watched": len(doc["watched"]), "load": (load0 + os.getloadavg()[0]) / 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory(prefix="watch-cpu-") as tmp, \
            endpoint_server(args.hosts) as url:
        root = write_project(Path(tmp) / "p", host_names(args.hosts), url)
        got = measure(root, args.warmup, args.window, per_cycle=3 * args.hosts)
    print(f"watch over {args.hosts} hosts x 3 http metrics (2 URLs each) at a 1 s poll, "
          f"{got['watched']:.0f} phases watched, load average {got['load']:.2f}:")
    print(f"  CPU:    {got['cpu_pct']:5.1f}% of one core at {got['cycles_per_s']:.2f} cycles/s "
          f"(the watch sleeps a poll interval after each cycle)")
    print(f"          {got['cpu_ms_per_cycle'] / 10:5.1f}% of one core at one cycle a second "
          f"({got['cpu_ms_per_cycle']:.0f} ms CPU a cycle)   (goal: at most {GOAL_CPU_PCT:g}%)")
    print(f"  memory: {got['rss_mb']:5.1f} MB peak RSS      (goal: at most {GOAL_RSS_MB:g} MB)")


if __name__ == "__main__":
    main()
