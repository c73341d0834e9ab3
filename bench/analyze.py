"""Time `migrate analyze` on a tree like the seed's agent directories (goal: <= 10 s on 2 cores).

Generates, in a temporary directory, FILES agent-like Python files totalling
about MEGABYTES MB (default 300 files, 11 MB, one of them 227 KB like
ModelManagerAgent), of which about two thirds are broken the way issue 14 found
the real ones (per 217 broken files: ~110 an unmatched `)`/`]`/`}`, 46 invalid
syntax, 37 an unexpected indent, 14 a block with no body, 6 a `(` never
closed; some files have two or three). Then runs the analysis of the whole tree
the way `migrate analyze DIR` does, and prints the time and what it found.

Run: python bench/analyze.py [--files N] [--mb MB] [--workers W] [--seed S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

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


def generate(root: Path, files: int, megabytes: float, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    total = int(megabytes * 1024 * 1024)
    shares = [rng.lognormvariate(0, 0.8) for _ in range(files - 1)]
    scale = (total - 227 * 1024) / sum(shares)
    sizes = [227 * 1024] + [max(2000, int(s * scale)) for s in shares]
    forms = [f for f, weight in FORMS for _ in range(weight)]
    broken = 0
    written = 0
    for k, size in enumerate(sizes):
        name = "ModelManagerAgent" if k == 0 else f"Agent{k:03d}"
        source = make_source(name, size, rng)
        if rng.random() < 217 / 321 or k == 0:
            broken += 1
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                source = break_source(source, rng.choice(forms), rng)
        path = root / f"agents_{k % 7}" / f"{name.lower()}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        written += len(source.encode())
    return broken, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--mb", type=float, default=11.0)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the tree here and keep it")
    args = parser.parse_args()

    from orchestrator.analysis.directory import _cpus, analyze_directory

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "agents"
        broken, written = generate(root, args.files, args.mb, args.seed)
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        result = analyze_directory(root, workers=args.workers)
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
    totals = result["totals"]
    print(f"tree: {args.files} files, {written / 1024 / 1024:.1f} MB, {broken} broken on purpose")
    print(f"found: {totals['files']} files analysed, {totals['unparsable']} not parsing, "
          f"{totals['skipped']} skipped, {totals['agent_classes']} agent classes "
          f"({totals['legacy_agent_classes']} legacy)")
    print(f"analyze: {seconds:.2f} s with {args.workers or _cpus()} worker(s) "
          f"on {_cpus()} CPU(s) (goal: <= 10 s on 2 cores); {cpu:.2f} CPU s in all")
    load = os.getloadavg()[0]
    if load > _cpus():
        print(f"note: load average {load:.1f} on {_cpus()} CPU(s): other work shares them, so "
              f"the wall time above is inflated; CPU s / CPUs is the figure on an idle machine")


def _cpu_seconds() -> float:
    """User + system time of this process and of its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
