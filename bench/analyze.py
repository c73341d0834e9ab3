"""Time `migrate analyze` on a tree like the real one (goals: <= 3 s on 2 cores; `--against`
<= 6 s; an `analyze` metric read of the unchanged 4,800-line seed file <= 5 ms).

The real tree (issue 23) is 321 agent files, swamped by junk: directories named
`_trash_*`, `archive`, `backups`, files named `*_backup.py`, `*_old.py`,
`*_copy.py`, `*.bak.py`, and identical copies. This generates, in a temporary
directory, FILES files totalling about MEGABYTES MB (default 321 files, 11 MB):

* live agents (default 226): varied synthetic agents (ZMQ REP/REQ/PUB/SUB/DEALER
  sockets made in helpers, raw sockets, threads, GPU calls) under
  `main_pc_code/agents*` and `pc2_code/agents`, one of them the seed's own
  ModelManagerAgent (read from ../shared/seed when it is there, else a 227 KB
  synthetic one); about two thirds broken the way issue 14 found the real ones
  (per 217 broken files: ~110 an unmatched `)`/`]`/`}`, 46 invalid syntax, 37 an
  unexpected indent, 14 a block with no body, 6 a `(` never closed);
* junk (the rest): 60% earlier revisions of live agents (other bytes) under
  `_trash_2025_07_*`, `archive/` and `backups/day4/`, 25% revisions named
  `*_backup.py`/`*_old.py`/`*_copy.py`/`*.bak.py` beside the live ones, 15%
  byte-identical copies of live agents at other paths.

Then it times, the way `migrate analyze` runs them: the tree with the default
exclusions; the tree with `--all-files` (for comparison: every revision analysed);
`--against` an older revision of the tree (a tenth of the live agents edited);
and the `analyze` metric source reading the unchanged seed file (median of 200).

Run: python bench/analyze.py [--files N] [--live N] [--mb MB] [--workers W] [--seed S]
                             [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADER = '''"""{name}: generated for the analyze benchmark."""
import json
import logging
import socket
import threading
import time

import torch
import zmq

from common.core.base_agent import BaseAgent
from common.utils.path_manager import PathManager

logger = logging.getLogger(__name__)


class {name}({base}):
    def __init__(self, port=5570, **kwargs):
        super().__init__(name="{name}", port=port, **kwargs)
        self.models = {{}}
        self.running = True
        self.socket = self.context.socket(zmq.REP)
        self.socket.bind(f"tcp://*:{{port}}")
'''

METHODS = [
    '''
    def _create_{n}_socket(self, port):
        sock = self.context.socket(zmq.{kind})
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(f"tcp://*:{{port}}")
        logger.info("bound %s socket on %d", "{kind}", port)
        return sock
''',
    '''
    def _loop_{n}(self):
        while self.running:
            request = self.socket.recv_json()
            result = self.handle_request_{n}(request, retries=3, timeout=5.0)
            self.socket.send_json({{"status": "ok", "result": result, "step": {n}}})
            time.sleep(0.{n})
''',
    '''
    def start_{n}(self):
        self.thread_{n} = threading.Thread(target=self._loop_{n}, name="loop-{n}", daemon=True)
        self.thread_{n}.start()
        logger.info("started loop %d", {n})
''',
    '''
    def handle_request_{n}(self, request, retries=1, timeout=1.0):
        action = request.get("action")
        if action == "load":
            return self.load_model_{n}(request["model"], device=request.get("device", "cuda:0"))
        elif action == "unload":
            return self.unload_model_{n}(request["model"])
        elif action in ("status", "health"):
            return {{"status": "ok", "models": sorted(self.models), "step": {n}}}
        return {{"status": "error", "error": f"unknown action {{action}}", "retries": retries}}
''',
    '''
    def load_model_{n}(self, name, device="cuda:0"):
        path = PathManager.get_models_dir() / name
        try:
            model = torch.load(path, map_location=device)
        except (OSError, RuntimeError) as exc:
            logger.error("cannot load %s: %s", name, exc)
            return {{"status": "error", "error": str(exc)}}
        self.models[name] = model.to(device)
        return {{"status": "ok", "model": name, "vram": torch.cuda.memory_allocated(0)}}
''',
    '''
    def unload_model_{n}(self, name):
        model = self.models.pop(name, None)
        if model is not None:
            del model
            torch.cuda.empty_cache()
        return {{"status": "ok", "model": name}}
''',
    '''
    def _port_free_{n}(self, port):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            return probe.connect_ex(("localhost", port)) != 0
        finally:
            probe.close()
''',
    '''
    def report_{n}(self):
        stats = {{
            "models": len(self.models),
            "vram_mb": torch.cuda.memory_allocated(0) // (1024 * 1024),
            "threads": [t.name for t in threading.enumerate() if t.daemon],
            "uptime": time.time() - self.started if hasattr(self, "started") else 0,
        }}
        payload = json.dumps(stats, sort_keys=True)
        # publish on the health socket, if there is one
        if getattr(self, "health_socket", None) is not None:
            self.health_socket.send_string(payload)
        return stats
''',
]

FOOTER = '''
    def _get_health_status(self):
        return {"status": "ok", "models": list(self.models)}


if __name__ == "__main__":
    agent = AGENT()
    agent.run()
'''

# (form, weight): the table, per 217 broken files
FORMS = [("unmatched", 110), ("invalid", 46), ("indent", 37), ("nobody", 14), ("unclosed", 6)]


def make_source(name: str, target_bytes: int, rng: random.Random) -> str:
    base = "BaseAgent" if rng.random() < 0.85 else "object"
    parts = [HEADER.format(name=name, base=base)]
    size = len(parts[0])
    n = 0
    while size < target_bytes:
        template = METHODS[n % len(METHODS)]
        text = template.format(n=n, kind=rng.choice(["REP", "REQ", "PUB", "SUB", "DEALER"]))
        parts.append(text)
        size += len(text)
        n += 1
    parts.append(FOOTER.replace("AGENT", name))
    return "".join(parts)


def break_source(source: str, form: str, rng: random.Random) -> str:
    lines = source.split("\n")
    body = [i for i, line in enumerate(lines) if line.startswith("        ")
            and not line.rstrip().endswith(":") and i > 25]
    i = rng.choice(body)
    line = lines[i]
    if form == "unmatched":
        closers = [k for k, line in enumerate(lines) if line.rstrip().endswith((")", "]", "}"))
                   and line.startswith("        ") and k > 25]
        k = rng.choice(closers)
        lines[k] = lines[k].rstrip() + lines[k].rstrip()[-1]
    elif form == "invalid":  # an import injected into a statement, or a stray token
        if rng.random() < 0.5:
            lines[i] = line + " from"
        else:
            lines.insert(i, line[: len(line) - len(line.lstrip())] + "import os import sys")
    elif form == "indent":
        lines[i] = "    " + line
    elif form == "nobody":
        indent = line[: len(line) - len(line.lstrip())]
        lines[i: i + 1] = [indent + "try:", indent + "    # disabled during the migration",
                           indent + "except Exception:", indent + "    pass", line]
    elif form == "unclosed":
        opens = [k for k, line in enumerate(lines) if line.rstrip().endswith(")")
                 and line.startswith("        ") and k > 25]
        k = rng.choice(opens)
        lines[k] = lines[k].rstrip()[:-1]
    return "\n".join(lines)


SEED = ROOT.parent / "shared" / "seed" / "model_manager_agent.py"


def _write(path: Path, text: str | bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    return len(data)


def generate(root: Path, files: int, live: int, megabytes: float, seed: int
             ) -> dict[str, int]:
    """The tree described in the module docstring; returns what was written."""
    rng = random.Random(seed)
    total = int(megabytes * 1024 * 1024)
    shares = [rng.lognormvariate(0, 0.8) for _ in range(files - 1)]
    scale = (total - 227 * 1024) / sum(shares)
    sizes = [227 * 1024] + [max(2000, int(x * scale)) for x in shares]
    forms = [f for f, weight in FORMS for _ in range(weight)]
    groups = ["main_pc_code/agents", "main_pc_code/agents/gpu", "main_pc_code/services",
              "pc2_code/agents", "pc2_code/agents/memory", "pc2_code/services",
              "main_pc_code/agents/language"]
    counts = {"live": 0, "broken": 0, "junk_dirs": 0, "junk_names": 0, "copies": 0, "bytes": 0}
    live_paths: list[Path] = []
    sources: list[str] = []
    for k in range(live):
        name = "ModelManagerAgent" if k == 0 else f"Agent{k:03d}"
        path = root / groups[k % len(groups)] / f"{name.lower()}.py"
        if k == 0 and SEED.is_file():
            source = SEED.read_text(encoding="utf-8", errors="replace")
        else:
            source = make_source(name, sizes[k], rng)
            if rng.random() < 217 / 321:
                counts["broken"] += 1
                for _ in range(rng.choice([1, 1, 1, 2, 3])):
                    source = break_source(source, rng.choice(forms), rng)
        counts["bytes"] += _write(path, source)
        live_paths.append(path)
        sources.append(source)
        counts["live"] += 1
    junk = files - live
    in_dirs, named = int(junk * 0.6), int(junk * 0.25)
    copies = junk - in_dirs - named
    junk_dirs = ["_trash_2025_07_20", "_trash_2025_07_21/main_pc_code", "archive/v1",
                 "main_pc_code/agents/archive", "backups/day4", "pc2_code/backups"]
    for j in range(in_dirs + named):
        k = rng.randrange(1, live)
        revision = make_source(f"Agent{k:03d}", sizes[live + j], rng)  # an earlier revision
        if j < in_dirs:
            path = root / junk_dirs[j % len(junk_dirs)] / live_paths[k].name
            counts["junk_dirs"] += 1
        else:
            suffix = ["_backup.py", "_old.py", "_copy.py", ".bak.py"][j % 4]
            path = live_paths[k].with_name(live_paths[k].stem + f"_{j}" + suffix)
            counts["junk_names"] += 1
        counts["bytes"] += _write(path, revision)
    for j in range(copies):
        k = rng.randrange(1, live)
        path = root / groups[(k + 1 + j) % len(groups)] / f"copy_{j}_{live_paths[k].name}"
        counts["bytes"] += _write(path, sources[k])
        counts["copies"] += 1
    return counts


def older_revision(tree: Path, old: Path, rng: random.Random) -> int:
    """A copy of `tree` in which a tenth of the live agents are as they were before an
    edit (a thread that the new revision removed); returns how many were edited."""
    shutil.copytree(tree, old, symlinks=True)
    live = sorted(p for p in old.rglob("*.py") if "_trash" not in str(p)
                  and "archive" not in str(p) and "backup" not in str(p))
    edited = rng.sample(live, max(1, len(live) // 10))
    for path in edited:
        text = path.read_text(encoding="utf-8", errors="replace")
        path.write_text(text + "\n\nimport threading\n"
                        "threading.Thread(target=print, name='legacy').start()\n")
    return len(edited)


def metric_read_ms(path: Path, reads: int = 200) -> tuple[float, float]:
    """(first read, median of `reads` reads of the unchanged file), in ms, through the
    `analyze` metric source as the monitor calls it."""
    from orchestrator.config.inventory import Host
    from orchestrator.core.model import Metric, MetricKind
    from orchestrator.metrics.sources.base import ReadContext, read_metric

    metric = Metric(name="threads_left", source="analyze", kind=MetricKind.PASSFAIL,
                    config={"path": str(path), "max": {"threads.count": 0, "sockets.count": 0}},
                    nodata="skip", nodata_alert=120.0, timeout=None, line=1)
    host = Host("main", {"ansible_connection": "local"})
    ctx = ReadContext(host=host, hostvars={"main": {}}, phase=2, run_id="bench", elapsed=0.0,
                      timeout=4.0, hosts={"main": host})
    t0 = time.perf_counter()
    first = read_metric(metric, ctx)
    first_ms = (time.perf_counter() - t0) * 1000
    assert first.value is not None, first
    took = []
    for _ in range(reads):
        t0 = time.perf_counter()
        read_metric(metric, ctx)
        took.append((time.perf_counter() - t0) * 1000)
    return first_ms, statistics.median(took)


def timed(fn: Any) -> tuple[Any, float, float]:
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0, _cpu_seconds() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=321)
    parser.add_argument("--live", type=int, default=226)
    parser.add_argument("--mb", type=float, default=11.0)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the tree here and keep it")
    args = parser.parse_args()

    from orchestrator.analysis.compare import compare_paths
    from orchestrator.analysis.directory import Exclusions, _cpus, analyze_directory

    cpus = _cpus()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        root = base / "agents"
        made = generate(root, args.files, args.live, args.mb, args.seed)
        old = base / "agents_before"
        edited = older_revision(root, old, random.Random(args.seed))
        result, wall, cpu = timed(lambda: analyze_directory(root, workers=args.workers))
        every, wall_all, cpu_all = timed(lambda: analyze_directory(
            root, workers=args.workers, exclusions=Exclusions(all_files=True)))
        changes, wall_cmp, cpu_cmp = timed(lambda: compare_paths(root, old,
                                                                 workers=args.workers))
        seed_path = root / "main_pc_code" / "agents" / "modelmanageragent.py"
        first_ms, median_ms = metric_read_ms(seed_path)
    totals = result["totals"]
    print(f"tree: {args.files} files, {made['bytes'] / 1024 / 1024:.1f} MB: {made['live']} live "
          f"agents ({made['broken']} broken on purpose, the seed's"
          f"{'' if SEED.is_file() else ' (synthetic)'} ModelManagerAgent among them), "
          f"{made['junk_dirs']} revisions under trash/archive/backup directories, "
          f"{made['junk_names']} named *_backup/_old/_copy/.bak, {made['copies']} identical copies")
    print(f"found: {totals['files']} files analysed, {totals['unparsable']} not parsing, "
          f"{totals['excluded']} excluded, {totals['duplicates']} duplicates, "
          f"{totals['skipped']} skipped; {totals['sockets']['count']} sockets, "
          f"{totals['threads']['count']} threads, {totals['worklist']} worklist sites")
    print(f"analyze DIR:              {wall:5.2f} s wall, {cpu:5.2f} CPU s "
          f"(goal: <= 3 s on 2 cores)")
    print(f"analyze DIR --all-files:  {wall_all:5.2f} s wall, {cpu_all:5.2f} CPU s "
          f"({every['totals']['files']} files analysed, {every['totals']['duplicates']} "
          f"duplicates)")
    ct = changes["totals"]
    print(f"analyze DIR --against OLD: {wall_cmp:5.2f} s wall, {cpu_cmp:5.2f} CPU s "
          f"(goal: <= 6 s; {edited} agents edited: {ct['changed']} files changed, "
          f"{ct['sites_removed']} sites removed, {ct['sites_added']} added)")
    print(f"metric read of the unchanged seed file: {median_ms:.3f} ms median of 200 "
          f"(goal: <= 5 ms; the first read, which analyses it: {first_ms:.0f} ms)")
    print(f"workers: {args.workers or cpus} on {cpus} CPU(s)")
    load = os.getloadavg()[0]
    if load > cpus:
        print(f"note: load average {load:.1f} on {cpus} CPU(s): other work shares them, so "
              f"the wall times above are inflated; CPU s / {cpus} is the figure on an idle "
              f"machine: {cpu / cpus:.2f} s, --against {cpu_cmp / cpus:.2f} s")


def _cpu_seconds() -> float:
    """User + system time of this process and of its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
