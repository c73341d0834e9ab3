#!/usr/bin/env python3
"""A stand-in ModelManagerAgent for rehearsals: the sandbox playbooks deploy, start, stop,
back up and restore it by revision, exactly as they would the real agent.

It serves, on 127.0.0.1:<health_port>:
  GET  /health   BaseAgent-style JSON: status, revision, threads, sockets, models_loaded,
                 model_load_failures, latency_ms (503 with status "error" during an
                 injected outage)
  GET  /metrics  Prometheus text with DCGM-named gauges from a simulated GPU whose VRAM
                 follows the models loaded (base 1000 MiB + each model's size), and the
                 agent's mma_request_latency_ms
Each VRAM and latency reading has noise (+-NOISE_PCT %), as a real fleet's does, so that
a canary analysis has distributions to compare, not constants.
  POST /models/load?name=N&size_mib=S, POST /models/unload?name=N
  POST /coordinate   a peer's coordination request (one host -> its peer)
and, with `zmq_port` set, a plain TCP listener standing in for its ZMQ port, which greets
each connection with one JSON line {"agent", "revision", "refuses": [...]}: the agents
that need this one read it to know whether it still serves them.

Faults are read from `faults_file` (JSON, written by `migrate rehearse`) on every request:
  {"vram_leak": {"from_revision": "phase3", "pct": 30}}   VRAM +30% from that revision on
  {"health_outage": {"revision": "phase2"}}            /health fails in that revision
  {"model_load_failure": true}     loads are accepted, then fail in the loader thread
  {"partition": {"on": "coordinate"}}   after a /coordinate, the peer port stops answering
  {"restore_fails": true}          `restore` fails (an unreadable backup)
  {"thread_unhealthy": {"thread": "model-loader", "from_revision": "phase3"}}
                                   that thread's mma_thread_health_status is 0 from that
                                   revision on (every revision when from_revision is absent)
  {"xid_errors": 2}                DCGM_FI_DEV_XID_ERRORS reads 2
  {"dependent_break": {"dependent": "EmpathyAgent", "from_revision": "phase2"}}
                                   from that revision on, the greeting on the ZMQ port
                                   refuses that agent (what it needs is broken)
  {"regression": {"from_revision": "phase3", "vram_pct": 12, "latency_pct": 15}}
                                   from that revision on, VRAM and latency that much higher
  {"thread_regression": {"from_revision": "phase3"}}
                                   the agent source `source` writes for that revision (and
                                   later ones) starts a raw threading.Thread again

/metrics also has the agent's own health gauges that the alert rules in
deploy/prometheus/ read: mma_thread_health_status{thread=...} per custom thread of the
running revision, and mma_socket_connection_status{socket=...}; 1 healthy, 0 not.

`source --revision R --dir DIR` writes the agent's own source at revision R as
DIR/model_manager_agent.py (the deploy installs it next to the stand-in, so that an `analyze`
metric reads what each phase deployed): before the migration it makes its ZMQ and raw
sockets and its threads itself; from phase2 on BaseAgent manages its sockets;
from phase3 on its background work runs on the BaseAgent lifecycle, no thread
of its own.

Standard library only; started with `serve --config CONFIG.json`, and stops by itself when
that file is gone (its sandbox was deleted).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

REVISIONS = ["original", "phase2", "phase3"]
BASE_VRAM_MIB = 1000.0
BASE_LATENCY_MS = 40.0
NOISE_PCT = 1.0
GPU_TOTAL_MIB = 24576.0
DEFAULT_MODELS = {"llm-7b-q4": 1500.0, "whisper-large": 2500.0}
THREADS = {
    "original": ["memory-manager", "health-check", "request-handler", "vram-monitor", "model-loader", "zmq-poller", "pc2-heartbeat"],
    "phase2": ["memory-manager", "health-check", "request-handler", "vram-monitor", "model-loader", "pc2-heartbeat"],
    "phase3": ["base-agent-lifecycle", "model-loader"],
}


class Agent:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.revision = str(config.get("revision", REVISIONS[0]))
        self.host = str(config.get("host", socket.gethostname()))
        self.models = dict(DEFAULT_MODELS)
        self.load_failures = 0
        self.started = time.time()
        self.lock = threading.Lock()
        self.peer: socket.socket | None = None
        self.coordinated = 0

    def faults(self) -> dict[str, Any]:
        path = self.config.get("faults_file")
        try:
            return dict(json.loads(Path(path).read_text())) if path else {}
        except (OSError, ValueError):
            return {}

    def rank(self, revision: str) -> int:
        return REVISIONS.index(revision) if revision in REVISIONS else 0

    def regression(self, key: str) -> float:
        """The injected `regression` factor for `vram_pct` or `latency_pct` (1: none)."""
        fault = self.faults().get("regression")
        if fault and self.rank(self.revision) >= self.rank(str(fault.get("from_revision"))):
            return 1 + float(fault.get(key, 0)) / 100
        return 1.0

    def vram_used(self) -> float:
        used = BASE_VRAM_MIB + sum(self.models.values())
        leak = self.faults().get("vram_leak")
        if leak and self.rank(self.revision) >= self.rank(str(leak.get("from_revision"))):
            used *= 1 + float(leak.get("pct", 30)) / 100
        return used * self.regression("vram_pct") * noise()

    def latency_ms(self) -> float:
        return BASE_LATENCY_MS * self.regression("latency_pct") * noise()

    def health(self) -> tuple[int, dict[str, Any]]:
        outage = self.faults().get("health_outage")
        doc: dict[str, Any] = {
            "status": "ok", "agent": "ModelManagerAgent", "host": self.host,
            "revision": self.revision, "uptime_s": round(time.time() - self.started, 1),
            "threads": {"custom": THREADS.get(self.revision, []),
                        "managed_by_base_agent": self.rank(self.revision) == len(REVISIONS) - 1},
            "sockets": {"zmq": 4, "raw": 0 if self.rank(self.revision) >= 1 else 2,
                        "managed_by_base_agent": self.rank(self.revision) >= 1},
            "models_loaded": sorted(self.models), "model_load_failures": self.load_failures,
            "latency_ms": round(self.latency_ms(), 2),
        }
        if outage and outage.get("revision") == self.revision:
            doc["status"] = "error"
            doc["error"] = "health check failed (injected outage)"
            return 503, doc
        return 200, doc

    def metrics(self) -> str:
        used = self.vram_used()
        labels = f'gpu="0",Hostname="{self.host}",modelName="Simulated GPU"'
        xid = float(self.faults().get("xid_errors", 0))
        lines = [
            "# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).",
            "# TYPE DCGM_FI_DEV_FB_USED gauge", f"DCGM_FI_DEV_FB_USED{{{labels}}} {used:.0f}",
            "# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).",
            "# TYPE DCGM_FI_DEV_FB_FREE gauge",
            f"DCGM_FI_DEV_FB_FREE{{{labels}}} {max(0.0, GPU_TOTAL_MIB - used):.0f}",
            "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).",
            "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
            f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} {min(100, 10 * len(self.models))}",
            "# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.",
            "# TYPE DCGM_FI_DEV_XID_ERRORS gauge", f"DCGM_FI_DEV_XID_ERRORS{{{labels}}} {xid:.0f}",
            "# HELP mma_request_latency_ms Latency of the agent's requests (ms).",
            "# TYPE mma_request_latency_ms gauge",
            f"mma_request_latency_ms {self.latency_ms():.2f}",
        ]
        return "\n".join(lines + self.health_gauges()) + "\n"

    def health_gauges(self) -> list[str]:
        """The agent's thread and socket gauges (1 healthy, 0 not), for alert rules."""
        sick = self.faults().get("thread_unhealthy") or {}
        since = sick.get("from_revision")
        sick_now = bool(sick) and (since is None
                                   or self.rank(self.revision) >= self.rank(str(since)))
        host = f'host="{self.host}"'
        lines = ["# HELP mma_thread_health_status Thread health (1 healthy, 0 not).",
                 "# TYPE mma_thread_health_status gauge"]
        for thread in THREADS.get(self.revision, []):
            ok = 0 if sick_now and thread == sick.get("thread") else 1
            lines.append(f'mma_thread_health_status{{{host},thread="{thread}"}} {ok}')
        lines += ["# HELP mma_socket_connection_status Socket connected (1) or not (0).",
                  "# TYPE mma_socket_connection_status gauge",
                  f'mma_socket_connection_status{{{host},socket="health"}} 1']
        if self.config.get("zmq_port"):
            up = 1 if self.peer is not None else 0
            lines.append(f'mma_socket_connection_status{{{host},socket="zmq"}} {up}')
        return lines

    def load(self, name: str, size: float) -> tuple[int, dict[str, Any]]:
        if self.faults().get("model_load_failure"):
            def fail_later() -> None:  # the loader thread fails after accepting the request
                time.sleep(0.3)
                with self.lock:
                    self.load_failures += 1
            threading.Thread(target=fail_later, daemon=True).start()
            return 202, {"accepted": True, "model": name}
        with self.lock:
            self.models[name] = size
        return 200, {"loaded": True, "model": name, "vram_used_mib": self.vram_used()}

    def unload(self, name: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            was = self.models.pop(name, None)
        return 200, {"unloaded": was is not None, "model": name}

    def coordinate(self) -> tuple[int, dict[str, Any]]:
        self.coordinated += 1
        partition = self.faults().get("partition")
        if partition and partition.get("on") == "coordinate":
            threading.Timer(0.5, self.close_peer_port).start()
        return 200, {"ok": True, "peer": self.host, "revision": self.revision}

    # --- the ZMQ stand-in port -------------------------------------------------------------
    def open_peer_port(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        self.peer = sock

        def accept() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                try:
                    conn.sendall(self.greeting())
                except OSError:
                    pass
                conn.close()
        threading.Thread(target=accept, daemon=True).start()

    def greeting(self) -> bytes:
        """What a client reads on connecting: who serves, at which revision, and which
        of the agents that need this one it no longer serves (a `dependent_break`)."""
        refuses = []
        broken = self.faults().get("dependent_break")
        if broken and self.rank(self.revision) >= self.rank(str(broken.get("from_revision"))):
            refuses.append(str(broken.get("dependent", "*")))
        doc = {"agent": "ModelManagerAgent", "revision": self.revision, "refuses": refuses}
        return (json.dumps(doc) + "\n").encode()

    def close_peer_port(self) -> None:
        if self.peer is not None:
            try:
                self.peer.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.peer.close()
            self.peer = None


def noise() -> float:
    return 1 + random.uniform(-NOISE_PCT, NOISE_PCT) / 100


def make_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def address_string(self) -> str:  # never a reverse DNS lookup
            return str(self.client_address[0])

        def reply(self, code: int, body: Any, ctype: str = "application/json") -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/health":
                self.reply(*agent.health())
            elif path == "/metrics":
                self.reply(200, agent.metrics(), "text/plain; version=0.0.4")
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if url.path == "/models/load":
                self.reply(*agent.load(q.get("name", "model"), float(q.get("size_mib", 512))))
            elif url.path == "/models/unload":
                self.reply(*agent.unload(q.get("name", "model")))
            elif url.path == "/coordinate":
                self.reply(*agent.coordinate())
            else:
                self.reply(404, {"error": "not found"})

    return Handler


def serve(config_path: Path) -> int:
    config = json.loads(config_path.read_text())
    agent = Agent(config)
    state = Path(config.get("state_dir", config_path.parent))
    state.mkdir(parents=True, exist_ok=True)
    pid_name = str(config.get("pid_file_name", "agent.pid"))
    (state / pid_name).write_text(f"{os.getpid()}\n")
    if config.get("zmq_port"):
        agent.open_peer_port(int(config["zmq_port"]))
    server = ThreadingHTTPServer(("127.0.0.1", int(config["health_port"])), make_handler(agent))
    server.daemon_threads = True

    def exit_with_sandbox() -> None:
        """Stop once the config file is gone: the sandbox was deleted (a drill killed before
        its teardown, a test's temp dir cleaned), and nobody is left to stop this process,
        which would otherwise hold its ports for good."""
        while config_path.exists():
            time.sleep(2)
        server.shutdown()

    threading.Thread(target=exit_with_sandbox, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


def restore(source: Path, target: Path, faults_file: str | None) -> int:
    """Put the files of a backup or snapshot back in place (config and revision included)."""
    faults: dict[str, Any] = {}
    if faults_file and Path(faults_file).exists():
        try:
            faults = json.loads(Path(faults_file).read_text())
        except ValueError:
            faults = {}
    if faults.get("restore_fails"):
        print("restore failed: backup archive unreadable (injected fault)", file=sys.stderr)
        return 1
    if not (source / "config.json").is_file():
        print(f"restore failed: {source} holds no backup (config.json missing)", file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name == "manifest.json":
            continue
        dest = target / item.name
        if item.is_dir():
            shutil.copytree(item, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dest)
    print(f"restored {target} from {source}")
    return 0


# --- the agent's own source, per revision (what an `analyze` metric reads) ---------------
SOURCE_FILE = "model_manager_agent.py"
AGENT_CLASS = "ModelManagerAgent"


def _method(name: str) -> str:
    return "_" + name.replace("-", "_") + "_loop"


def agent_source(revision: str, faults: dict[str, Any]) -> str:
    """The agent's source at `revision`: sockets and threads of its own before the
    migration; sockets through BaseAgent from the second revision; no thread of its own
    from the last. A `thread_regression` fault brings a raw threading.Thread back."""
    rank = REVISIONS.index(revision) if revision in REVISIONS else 0
    last = len(REVISIONS) - 1
    threads = THREADS.get(revision, [])
    regression = faults.get("thread_regression")
    regressed = bool(regression) and rank >= (
        REVISIONS.index(str(regression.get("from_revision")))
        if regression.get("from_revision") in REVISIONS else 0)
    raw_threads = list(threads) if rank < last else []
    if regressed:
        raw_threads.append("vram-monitor")
    stdlib = {"logging", "time"} | ({"socket"} if rank == 0 else set()) \
        | ({"threading"} if raw_threads else set())
    imports = [f"import {name}" for name in sorted(stdlib)]
    if rank == 0:
        imports += ["", "import zmq"]
    out = [f'"""{AGENT_CLASS} at revision {revision} (sandbox copy of the agent\'s source)."""',
           "", *imports, "", "from common.core.base_agent import BaseAgent", "", "",
           f"class {AGENT_CLASS}(BaseAgent):",
           "    def __init__(self, port: int = 5570, pc2_address: str = 'tcp://pc2:5570'):",
           f"        super().__init__(name='{AGENT_CLASS}', port=port)",
           "        self.models = {}",
           "        self.running = True"]
    if rank == 0:  # sockets made by hand, as the seed's file does
        out += ["        self.context = zmq.Context()",
                "        self.socket = self.context.socket(zmq.REP)",
                "        self.socket.bind(f'tcp://*:{port}')",
                "        self.health_socket = self.context.socket(zmq.PUB)",
                "        self.health_socket.bind(f'tcp://*:{port + 1}')",
                "        self.pc2_socket = self.context.socket(zmq.REQ)",
                "        self.pc2_socket.connect(pc2_address)",
                "        self.vram_sub = self.context.socket(zmq.SUB)",
                "        self.vram_sub.connect('tcp://localhost:5598')",
                "        self.status_listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
                "        self.status_listener.bind(('0.0.0.0', port + 2))",
                "        self.probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"]
    else:  # BaseAgent's socket management: no socket of the agent's own
        out += ["        self.register_request_handler(self.handle_request)",
                "        self.register_peer('pc2', pc2_address)"]
    for name in raw_threads:
        attr = "self." + name.replace("-", "_") + "_thread"
        out += [f"        {attr} = threading.Thread(target=self.{_method(name)}, "
                f"name='{name}', daemon=True)",
                f"        {attr}.start()"]
    if rank == last:
        out += [f"        self.start_background_task(self.{_method(name)}, name='{name}')"
                for name in threads if name != "base-agent-lifecycle"]
    out += ["", "    def _get_health_status(self) -> dict:",
            f"        return {{'status': 'ok', 'revision': '{revision}', "
            "'models_loaded': sorted(self.models)}", "",
            "    def handle_request(self, request: dict) -> dict:",
            "        if request.get('action') == 'load_model':",
            "            self.models[request['name']] = request.get('size_mib', 0)",
            "        elif request.get('action') == 'unload_model':",
            "            self.models.pop(request['name'], None)",
            "        return {'status': 'ok'}"]
    for name in sorted(set(raw_threads) | set(threads) - {"base-agent-lifecycle"}):
        out += ["", f"    def {_method(name)}(self) -> None:",
                "        while self.running:",
                f"            logging.debug('{name} tick')",
                "            time.sleep(1)"]
    return "\n".join(out) + "\n"


def write_source(revision: str, directory: Path, faults_file: str | None) -> int:
    faults: dict[str, Any] = {}
    if faults_file and Path(faults_file).exists():
        try:
            faults = dict(json.loads(Path(faults_file).read_text()))
        except ValueError:
            faults = {}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SOURCE_FILE).write_text(agent_source(revision, faults))
    print(f"wrote {directory / SOURCE_FILE} ({revision})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mma_standin")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--config", type=Path, required=True)
    p_restore = sub.add_parser("restore")
    p_restore.add_argument("--from", dest="source", type=Path, required=True)
    p_restore.add_argument("--to", dest="target", type=Path, required=True)
    p_restore.add_argument("--faults-file", default=None)
    p_source = sub.add_parser("source")
    p_source.add_argument("--revision", required=True)
    p_source.add_argument("--dir", dest="directory", type=Path, required=True)
    p_source.add_argument("--faults-file", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        return serve(args.config)
    if args.cmd == "source":
        return write_source(args.revision, args.directory, args.faults_file)
    return restore(args.source, args.target, args.faults_file)


if __name__ == "__main__":
    sys.exit(main())
