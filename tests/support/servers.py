"""Small real servers the tests control: an agent-like metrics endpoint and a webhook sink.

Plain sockets under http.server on 127.0.0.1; handlers never do reverse lookups.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None

    def address_string(self) -> str:  # no reverse DNS
        return str(self.client_address[0])


class AgentServer:
    """Serves /health (JSON) and /metrics (Prometheus text) from values the test sets."""

    def __init__(self) -> None:
        self.health: dict[str, Any] = {"status": "ok", "model_load_failures": 0}
        self.health_code = 200
        self.gauges: dict[str, float] = {"DCGM_FI_DEV_FB_USED": 1000.0}
        self.requests = 0
        owner = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                owner.requests += 1
                if self.path.startswith("/health"):
                    body = json.dumps(owner.health).encode()
                    code, ctype = owner.health_code, "application/json"
                else:
                    body = "".join(f'{k}{{gpu="0"}} {v}\n' for k, v in owner.gauges.items()).encode()
                    code, ctype = 200, "text/plain; version=0.0.4"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"


class WebhookSink:
    """Records JSON POSTs; `fail_first` answers 500 that many times first (retry test)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.got = threading.Event()
        owner = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                owner.attempts += 1
                if owner.attempts <= owner.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                owner.received.append(payload)
                owner.got.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@contextmanager
def serving(obj: AgentServer | WebhookSink) -> Iterator[Any]:
    thread = threading.Thread(target=obj.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield obj
    finally:
        obj.server.shutdown()
        obj.server.server_close()
