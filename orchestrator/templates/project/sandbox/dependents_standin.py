#!/usr/bin/env python3
"""Stand-ins for the agents that need [[ agent_display ]] ([[ dependents | map(attribute='name') | join(', ') ]]),
for rehearsals: the sandbox's provision playbook starts one process per machine, serving
the stand-in of each of that machine's dependents on its own health port.

A dependent is healthy while [[ agent_display ]] serves what it needs. Every POLL_S seconds
each stand-in connects to [[ agent_display ]]'s own port on each of its hosts (`needs`) and
reads its greeting, one JSON line: {"agent", "revision", "refuses": [dependent names]}.
- a greeting that refuses this dependent (a revision that broke what it needs): unhealthy
  at once;
- no connection (the agent restarting during a deploy): tolerated for GRACE_S seconds, as
  a real client that reconnects does; unhealthy after that.
Healthy, a `tcp` stand-in listens on its health port and an `http` one answers 200
{"status": "ok"} on its path; unhealthy, the first stops listening and the second
answers 503, so that the project's health probe of that dependent fails, from its
own machine, as it would for the real agent.

Standard library only; started with `serve --config CONFIG.json`, and stops by itself when
that file is gone (its sandbox was deleted).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

POLL_S = 0.25
GRACE_S = 60.0
CONNECT_TIMEOUT_S = 1.0


def greeting(endpoint: str) -> dict[str, Any] | None:
    """The agent's greeting on HOST:PORT, or None when nothing answers there."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S) as conn:
            conn.settimeout(CONNECT_TIMEOUT_S)
            data = b""
            while not data.endswith(b"\n") and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
    except (OSError, ValueError):
        return None
    try:
        doc = json.loads(data.decode() or "{}")
    except ValueError:
        return {"refuses": ["*"], "why": "no greeting"}
    return doc if isinstance(doc, dict) else {"refuses": ["*"], "why": "no greeting"}


class Dependent:
    """One dependent's stand-in: its health state and the port that says it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.name = str(spec["name"])
        self.port = int(spec["port"])
        self.check = str(spec.get("check") or "tcp")
        self.path = str(spec.get("path") or "/health")
        self.healthy = True
        self.why = ""
        self.listener: socket.socket | None = None
        self.http: ThreadingHTTPServer | None = None

    def start(self) -> None:
        if self.check == "http":
            self.http = ThreadingHTTPServer(("127.0.0.1", self.port), make_handler(self))
            self.http.daemon_threads = True
            threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.2},
                             daemon=True).start()
        else:
            self.listen()

    def set(self, healthy: bool, why: str) -> None:
        if healthy != self.healthy:
            print(f"{self.name}: {'healthy' if healthy else 'unhealthy: ' + why}", flush=True)
        self.healthy, self.why = healthy, why
        if self.check == "tcp":
            if healthy and self.listener is None:
                self.listen()
            elif not healthy and self.listener is not None:
                self.close()

    def listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.port))
        except OSError as exc:
            sock.close()
            print(f"{self.name}: cannot listen on {self.port} ({exc})", flush=True)
            return
        sock.listen(64)
        self.listener = sock

        def accept() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                conn.close()
        threading.Thread(target=accept, daemon=True).start()

    def close(self) -> None:
        sock, self.listener = self.listener, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def make_handler(dependent: Dependent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def address_string(self) -> str:  # never a reverse DNS lookup
            return str(self.client_address[0])

        def do_GET(self) -> None:
            if self.path.split("?")[0] != dependent.path:
                code, doc = 404, {"error": "not found"}
            elif dependent.healthy:
                code, doc = 200, {"status": "ok", "agent": dependent.name}
            else:
                code, doc = 503, {"status": "error", "agent": dependent.name,
                                  "error": dependent.why}
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def judge(dependents: list[Dependent], needs: list[str], down_since: dict[str, float]) -> None:
    """One round: ask every endpoint once, then set each dependent's health from it."""
    now = time.monotonic()
    answers = {endpoint: greeting(endpoint) for endpoint in needs}
    for endpoint, answer in answers.items():
        if answer is None:
            down_since.setdefault(endpoint, now)
        else:
            down_since.pop(endpoint, None)
    for dependent in dependents:
        why = ""
        for endpoint, answer in answers.items():
            if answer is None:
                if now - down_since[endpoint] > GRACE_S:
                    why = f"{endpoint} has not answered for {now - down_since[endpoint]:.0f}s"
            elif dependent.name in answer.get("refuses", []) or "*" in answer.get("refuses", []):
                why = (f"{answer.get('agent', endpoint)} at revision "
                       f"{answer.get('revision', '?')} no longer serves {dependent.name}")
        dependent.set(not why, why)


def serve(config_path: Path) -> int:
    config = json.loads(config_path.read_text())
    state = Path(config.get("state_dir", config_path.parent))
    state.mkdir(parents=True, exist_ok=True)
    (state / str(config.get("pid_file_name", "dependents.pid"))).write_text(f"{os.getpid()}\n")
    dependents = [Dependent(spec) for spec in config.get("dependents", [])]
    for dependent in dependents:
        dependent.start()
    needs = [str(n) for n in config.get("needs", [])]
    down_since: dict[str, float] = {}
    # until the config file is gone: the sandbox was deleted (a drill killed before its
    # teardown, a test's temp dir cleaned), and nobody is left to stop this process
    while config_path.exists():
        judge(dependents, needs, down_since)
        time.sleep(POLL_S)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dependents_standin")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    return serve(args.config)


if __name__ == "__main__":
    sys.exit(main())
