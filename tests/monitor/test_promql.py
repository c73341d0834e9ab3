"""metrics/promql.py: the one Prometheus client (prometheus-api-client underneath).

Against a real Prometheus for what it answers, and a recording HTTP server for how we
ask: POSTed form bodies, no retries, kept connections, and errors translated into
`Rejected` (Prometheus refused the query) or `Unanswered` (no usable answer)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.metrics.promql import PromQL, Rejected, Unanswered, result_type
from tests.support.prom import free_port, prometheus
from tests.support.servers import AgentServer, serving


class Recorder:
    """An HTTP server answering every request with `code` and `body`, recording each
    request (method, path, form body) and each client connection."""

    def __init__(self, code: int = 200, body: Any = None) -> None:
        self.code = code
        self.body = body if body is not None else {
            "status": "success", "data": {"resultType": "vector", "result": []}}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.connections: set[tuple[str, int]] = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                owner.requests.append((self.command, self.path, form))
                owner.connections.add(self.client_address)
                raw = owner.body if isinstance(owner.body, bytes) else \
                    json.dumps(owner.body).encode()
                self.send_response(owner.code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def recording(rec: Recorder) -> Iterator[Recorder]:
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


def test_queries_are_posted_in_the_body_on_one_kept_connection() -> None:
    hosts = "|".join(f"gpu-{i:04d}" for i in range(2000))  # 20 kB: past many proxies' URL limit
    query = f'sum by (Hostname) (DCGM_FI_DEV_FB_USED{{Hostname=~"{hosts}"}})'
    with recording(Recorder()) as rec:
        client = PromQL()
        for _ in range(3):
            assert client.instant(rec.url, query, timeout=2) == ("vector", [])
        client.range(rec.url, "up", 1000.0, 1060.0, step=5.0, timeout=2)
        client.close()
    assert [(m, p) for m, p, _ in rec.requests] == [("POST", "/api/v1/query")] * 3 + [
        ("POST", "/api/v1/query_range")]
    assert rec.requests[0][2]["query"] == [query]
    assert rec.requests[3][2]["step"] == ["5"] and rec.requests[3][2]["start"] == ["1000"]
    assert len(rec.connections) == 1  # keep-alive across queries


def test_an_answer_without_prometheus_error_is_unanswered_at_once_without_retry() -> None:
    with recording(Recorder(503, b"<html>busy</html>")) as rec:
        started = time.monotonic()
        with pytest.raises(Unanswered, match="HTTP 503"):
            PromQL().instant(rec.url, "up", timeout=2)
        assert time.monotonic() - started < 1.0
    assert len(rec.requests) == 1  # the library's default would retry 3 times


def test_a_refused_connection_is_unanswered_naming_the_cause() -> None:
    with pytest.raises(Unanswered, match="Connection refused"):
        PromQL().instant(f"http://127.0.0.1:{free_port()}", "up", timeout=1)


def test_not_prometheus_json_is_unanswered() -> None:
    with recording(Recorder(200, b"not json")) as rec, pytest.raises(Unanswered):
        PromQL().instant(rec.url, "up", timeout=2)


@pytest.mark.parametrize(("result", "kind"), [
    ([], "vector"), ([{"metric": {}, "value": [1.0, "2"]}], "vector"),
    ([{"metric": {}, "values": [[1.0, "2"]]}], "matrix"),
    ([1.5, "3"], "scalar"), ([1.5, "hello"], "string")])
def test_result_type(result: Any, kind: str) -> None:
    assert result_type(result) == kind


@pytest.mark.integration
def test_a_real_prometheus_answers_and_refuses(tmp_path: Path) -> None:
    with serving(AgentServer()) as agent:
        agent.gauges["DCGM_FI_DEV_FB_USED"] = 1234
        with prometheus(tmp_path, f"127.0.0.1:{agent.port}", "DCGM_FI_DEV_FB_USED") as url:
            client = PromQL()
            kind, result = client.instant(url, 'DCGM_FI_DEV_FB_USED{gpu="0"}', timeout=5)
            assert kind == "vector" and float(result[0]["value"][1]) == 1234
            assert client.instant(url, "scalar(sum(DCGM_FI_DEV_FB_USED))", 5)[0] == "scalar"
            assert client.instant(url, '"text"', 5)[0] == "string"
            with pytest.raises(Rejected, match="bad_data"):
                client.instant(url, "sum((", timeout=5)
            end = time.time() + 2  # past the first scrape, whatever rounding to seconds does
            series = client.range(url, "DCGM_FI_DEV_FB_USED", end - 30, end, 1.0, timeout=5)
            assert series and all(float(v) == 1234 for _, v in series[0]["values"])
