"""Time `migrate analyze PATH --graph` on a 650-file system with its two manifests (goal:
<= 5 s on 2 cores).

The manifests are the shared ones (../shared/seed/startup_config.{main,pc2}.yaml: 76
agents, 140 declared dependencies). This generates, in a temporary directory, a tree of
FILES files (default 650, about MEGABYTES MB, default 16) laid out as they name them:

* one file per manifest agent at its ``script_path``: ModelManagerSuite is the seed's
  ModelManagerAgent (read from ../shared/seed when it is there), with three near copies
  beside it (``*_day4_optimized.py``, ``*_migrated.py``, ``*_test.py``); the others are
  synthetic agents (bench/analyze.py's generator) that connect to the ports of their
  declared dependencies, look one of them up by name, and two thirds of them broken the
  way the real ones are;
* a common BaseAgent that registers with the ServiceRegistry (port 7200);
* the rest: helper modules, earlier revisions under ``_trash_*``/``archive``/``backups``,
  ``*_backup.py``/``*_old.py`` beside the live ones and identical copies, as in the real
  tree (bench/analyze.py).

Then it times `program_graph` (the whole of ``analyze --graph``: the manifests, the
analysis of the tree in worker processes, endpoints, variants, edges, drift and order) and
the DOT rendering, and prints what the graph found.

Run: python bench/graph.py [--files N] [--mb MB] [--workers W] [--seed S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import analyze as tree_bench  # noqa: E402  (bench/analyze.py: its agent generator)

SEED_DIR = next((p for p in (ROOT.parent / "shared" / "seed", Path("/work/shared/seed"))
                 if p.is_dir()), ROOT.parent / "shared" / "seed")

BASE_AGENT = '''"""The system's BaseAgent (generated for the graph benchmark)."""
import os

import zmq

HUB_PORT = int(os.environ.get("SERVICE_REGISTRY_PORT", "7200"))


class BaseAgent:
    def __init__(self, name, port=None, **kwargs):
        self.name = name
        self.port = port
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.REP)
        self.socket.bind(f"tcp://*:{self.port}")
        hub = self.context.socket(zmq.REQ)
        hub.connect(f"tcp://localhost:{HUB_PORT}")
        hub.send_json({"register": name, "port": port})
'''

CONNECT = '''
    def _connect_{n}(self):
        sock = self.context.socket(zmq.REQ)
        sock.connect("tcp://{host}:{port}")
        return sock
'''

LOOKUP = '''
    def _find_{n}(self):
        from main_pc_code.utils.service_discovery_client import get_service_address
        sock = self.context.socket(zmq.REQ)
        sock.connect(get_service_address("{name}"))
        return sock
'''


def _agent_source(name: str, spec: object, system: object, size: int,
                  rng: random.Random) -> str:
    source = tree_bench.make_source(name, size, rng).replace(
        'super().__init__(name="' + name + '", port=port',
        f'super().__init__(name="{name}", port={getattr(spec, "port", 0) or 5570}')
    deps = list(system.dependencies_of(name))  # type: ignore[attr-defined]
    extra = []
    for n, dep in enumerate(deps):
        target = system.agents[dep]  # type: ignore[attr-defined]
        if n == 0 and rng.random() < 0.5:
            extra.append(LOOKUP.format(n=n, name=dep))
        elif target.port is not None:
            extra.append(CONNECT.format(n=n, host="localhost", port=target.port))
    footer = source.rfind("\n\nif __name__")
    cut = footer if footer > 0 else len(source)
    # agents of one template would be near copies of each other; real ones are not: a
    # fifth of the lines carry the agent's own note
    lines = (source[:cut] + "".join(extra)).split("\n")
    for i in range(30, len(lines), 5):
        if lines[i].strip() and not lines[i].rstrip().endswith((":", "\\", ",", "(")):
            lines[i] += f"  # {name}"
    return "\n".join(lines) + source[cut:]


def generate(root: Path, files: int, megabytes: float, seed: int) -> dict[str, int]:
    from orchestrator.analysis.manifests import load_system, parse_services_option

    rng = random.Random(seed)
    system = load_system([parse_services_option(f"main={SEED_DIR}/startup_config.main.yaml"),
                          parse_services_option(f"pc2={SEED_DIR}/startup_config.pc2.yaml")])
    seed_file = SEED_DIR / "model_manager_agent.py"
    counts = {"agents": 0, "variants": 0, "broken": 0, "other": 0, "bytes": 0, "files": 0}

    def write(rel: str, text: str) -> None:
        counts["bytes"] += tree_bench._write(root / rel, text)
        counts["files"] += 1

    write("common/core/base_agent.py", BASE_AGENT)
    total = int(megabytes * 1024 * 1024)
    per_file = max(4000, (total - 4 * 233_000) // max(1, files - 5))
    forms = [f for f, weight in tree_bench.FORMS for _ in range(weight)]
    sources: list[tuple[str, str]] = []
    for name, spec in system.agents.items():
        if not spec.script:
            continue
        if name == "ModelManagerSuite" and seed_file.is_file():
            text = seed_file.read_text(encoding="utf-8", errors="replace")
            write(spec.script, text)
            lines = text.split("\n")
            stem = spec.script[:-3]
            for k, suffix in enumerate(("_day4_optimized", "_migrated", "_test")):
                copy = list(lines)
                for i in rng.sample(range(100, len(copy)), 40 + 20 * k):
                    copy[i] = copy[i] + f"  # {suffix[1:]}"
                write(stem + suffix + ".py", "\n".join(copy))
                counts["variants"] += 1
        else:
            size = int(per_file * rng.lognormvariate(0, 0.6))
            text = _agent_source(name, spec, system, size, rng)
            if rng.random() < 2 / 3:
                text = tree_bench.break_source(text, rng.choice(forms), rng)
                counts["broken"] += 1
            write(spec.script, text)
            sources.append((spec.script, text))
        counts["agents"] += 1
    junk_dirs = ["_trash_2025_07_20", "archive/v1", "backups/day4", "pc2_code/backups"]
    j = 0
    while counts["files"] < files:
        kind = j % 4
        rel, text = sources[rng.randrange(len(sources))]
        if kind == 0:  # a helper module of the system
            size = int(per_file * rng.lognormvariate(0, 0.6))
            write(f"common/utils/helper_{j}.py", tree_bench.make_source(f"Helper{j}", size, rng))
        elif kind == 1:  # an earlier revision in a junk directory
            write(f"{junk_dirs[j % len(junk_dirs)]}/{j}_{Path(rel).name}",
                  tree_bench.make_source(f"Old{j}", per_file, rng))
        elif kind == 2:  # a revision named like one beside the live file
            write(rel[:-3] + f"_{j}" + ["_backup.py", "_old.py"][j % 2],
                  tree_bench.make_source(f"Old{j}", per_file, rng))
        else:  # an identical copy elsewhere
            write(f"copies/{j}_{Path(rel).name}", text)
        counts["other"] += 1
        j += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=650)
    parser.add_argument("--mb", type=float, default=16.0)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--seed", type=int, default=28)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the tree here and keep it")
    args = parser.parse_args()

    from orchestrator.analysis.directory import _cpus
    from orchestrator.analysis.graph import program_graph
    from orchestrator.analysis.graph_render import render_graph_dot
    from orchestrator.analysis.manifests import parse_services_option

    cpus = _cpus()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or Path(tmp)) / "system"
        made = generate(root, args.files, args.mb, args.seed)
        services = [parse_services_option(f"main={SEED_DIR}/startup_config.main.yaml"),
                    parse_services_option(f"pc2={SEED_DIR}/startup_config.pc2.yaml")]
        graph, wall, cpu = tree_bench.timed(
            lambda: program_graph(root, services, workers=args.workers))
        _, dot_wall, _ = tree_bench.timed(lambda: render_graph_dot(graph))
    t = graph["totals"]
    print(f"tree: {made['files']} files, {made['bytes'] / 1024 / 1024:.1f} MB: "
          f"{made['agents']} manifest agents ({made['broken']} broken on purpose), "
          f"{made['variants']} near copies of ModelManagerSuite, {made['other']} other "
          f"(helpers, revisions, copies)")
    print(f"graph: {t['nodes']} nodes, {t['edges']} edges ({t['declared']} declared, "
          f"{t['seen']} seen in code, {t['undeclared']} undeclared, {t['unseen']} unseen), "
          f"{t['unresolved']} unresolved endpoints, {t['unknown']} unknown names, "
          f"{t['steps']} steps, {t['variant_groups']} variant groups, "
          f"{t['script_missing']} scripts missing")
    print(f"analyze --graph: {wall:5.2f} s wall, {cpu:5.2f} CPU s (goal: <= 5 s on 2 cores); "
          f"DOT rendering {dot_wall * 1000:.0f} ms")
    print(f"workers: {args.workers or cpus} on {cpus} CPU(s)")
    load = os.getloadavg()[0]
    if load > cpus:
        print(f"note: load average {load:.1f} on {cpus} CPU(s): other work shares them, so "
              f"the wall time above is inflated; CPU s / {cpus} is the figure on an idle "
              f"machine: {cpu / cpus:.2f} s")


if __name__ == "__main__":
    main()
