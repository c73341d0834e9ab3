"""The pooled HTTP client (core.http) under the `http` and `exporter` sources, the
Alertmanager pull and the notifier: kept-alive connections reused across polls, a
bounded number per host, and every failure one "no data" (or one PullError, one
retried OSError) at the boundary.

Real HTTP/1.1 servers on 127.0.0.1 that count the TCP connections they accept.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from orchestrator.config.inventory import Host
from orchestrator.core.http import HttpAnswer, HttpClient, HttpUnavailable
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.alerts.book import AlertBook
from orchestrator.metrics.alerts.pull import AlertPuller
from orchestrator.metrics.sources.base import (
    CycleMemo,
    ReadContext,
    batched,
    read_hosts,
    read_metric,
)
from orchestrator.notify.sender import PooledPost


class CountingServer:
    """HTTP/1.1 keep-alive; counts connections, requests, and the most open at once."""

    def __init__(self, body: bytes = b'{"status": "ok", "vram": 1234}', status: int = 200,
                 delay: float = 0.0, ctype: str = "application/json") -> None:
        self.body, self.status, self.delay, self.ctype = body, status, delay, ctype
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.most_open = 0
        self.posted: list[Any] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner.connections += 1
                    owner.open += 1
                    owner.most_open = max(owner.most_open, owner.open)

            def finish(self) -> None:
                with owner._lock:
                    owner.open -= 1
                super().finish()

            def _answer(self) -> None:
                with owner._lock:
                    owner.requests += 1
                if owner.delay:
                    time.sleep(owner.delay)
                self.send_response(owner.status)
                self.send_header("Content-Type", owner.ctype)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                owner.posted.append(json.loads(self.rfile.read(length)))
                self._answer()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def serving(**kwargs: Any) -> Iterator[CountingServer]:
    srv = CountingServer(**kwargs)
    thread = threading.Thread(target=srv.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.server.shutdown()
        srv.server.server_close()


def context(http: HttpClient, host: str = "h1", timeout: float = 2.0) -> ReadContext:
    return ReadContext(host=Host(host, {}), hostvars={host: {}}, phase=1, run_id="r",
                       elapsed=0.0, timeout=timeout, memo=CycleMemo(), http=http)


def metric(source: str, **config: Any) -> Metric:
    kind = MetricKind.PASSFAIL if "expect" in config else MetricKind.NUMBER
    return Metric(name="m", source=source, kind=kind, config=config, nodata="skip",
                  nodata_alert=120.0, timeout=None, line=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_reads_reuse_one_connection_across_polls() -> None:
    with serving() as srv, HttpClient() as http:
        m = metric("http", url=f"{srv.url}/health", field="vram")
        for _ in range(5):  # five polls, each its own cycle (its own memo)
            assert read_metric(m, context(http)).value == 1234.0
        assert (srv.requests, srv.connections) == (5, 1)


def test_exporter_scrapes_reuse_one_connection_across_polls() -> None:
    body = b'DCGM_FI_DEV_FB_USED{gpu="0"} 2000\nDCGM_FI_DEV_FB_USED{gpu="1"} 500\n'
    with serving(body=body, ctype="text/plain; version=0.0.4") as srv, HttpClient() as http:
        m = metric("exporter", url=f"{srv.url}/metrics", series="DCGM_FI_DEV_FB_USED")
        for _ in range(3):
            assert read_metric(m, context(http)).value == 2500.0
        assert (srv.requests, srv.connections) == (3, 1)


def test_connections_to_one_host_are_bounded_and_waiting_reads_still_answer() -> None:
    with serving(delay=0.05) as srv, HttpClient(per_host=3) as http:
        m = metric("http", url=f"{srv.url}/health?h={{{{ host }}}}", field="vram")
        with ThreadPoolExecutor(max_workers=12) as pool:
            got = list(pool.map(lambda i: read_metric(m, context(http, f"h{i}")).value,
                                range(24)))
        assert got == [1234.0] * 24
        assert srv.requests == 24
        assert srv.most_open <= 3 and srv.connections <= 3


def test_a_refused_read_is_no_data_and_a_failing_passfail_metric() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    with HttpClient() as http:
        number = read_metric(metric("http", url=url, field="vram"), context(http))
        passfail = read_metric(metric("http", url=url, expect={"status": "ok"}), context(http))
        scrape = read_metric(metric("exporter", url=url, series="X"), context(http))
    assert number.value is None and "refused" in (number.error or "").lower()
    assert passfail.value == 0.0 and "refused" in (passfail.error or "").lower()
    assert scrape.value is None and "refused" in (scrape.error or "").lower()


def test_a_slow_answer_is_no_data_within_the_read_timeout() -> None:
    with serving(delay=1.5) as srv, HttpClient() as http:
        started = time.monotonic()
        got = read_metric(metric("http", url=f"{srv.url}/health", field="vram"),
                          context(http, timeout=0.3))
        assert time.monotonic() - started < 1.2
    assert got.value is None and "timed out" in (got.error or "")


def test_non_2xx_is_an_answer_to_the_client_and_no_data_to_the_source() -> None:
    with serving(status=503) as srv, HttpClient() as http:
        answer = http.get(f"{srv.url}/health", 2)
        assert (answer.status, answer.ok) == (503, False)
        got = read_metric(metric("http", url=f"{srv.url}/health", field="vram"), context(http))
    assert got.value is None and "HTTP 503" in (got.error or "")


@pytest.mark.parametrize("url", ["ftp://example.org/x", "http://", "not a url"])
def test_an_unusable_url_is_one_error_not_a_crash(url: str) -> None:
    with HttpClient() as http, pytest.raises(HttpUnavailable):
        http.get(url, 1)


def test_a_body_over_the_limit_is_no_answer_and_the_pool_still_works() -> None:
    with serving(body=b"x" * 5000) as srv, HttpClient() as http:
        with pytest.raises(HttpUnavailable, match="over 100 bytes"):
            http.get(f"{srv.url}/big", 2, limit=100)
        assert http.get(f"{srv.url}/big", 2).body == b"x" * 5000


def test_the_notifier_posts_json_on_one_kept_alive_connection_and_raises_on_non_2xx() -> None:
    with serving(body=b"ok") as srv:
        post = PooledPost()
        try:
            post(f"{srv.url}/hook", {"text": "one"})
            post(f"{srv.url}/hook", {"text": "two"})
        finally:
            post.close()
        assert srv.posted == [{"text": "one"}, {"text": "two"}]
        assert srv.connections == 1
    with serving(status=500) as srv:
        post = PooledPost()
        try:
            with pytest.raises(OSError, match="500"):
                post(f"{srv.url}/hook", {"text": "x"})
        finally:
            post.close()


def test_alertmanager_polls_reuse_one_connection_and_errors_are_pull_errors() -> None:
    alerts = [{"labels": {"alertname": "A", "instance": "main"}, "status": {"state": "active"},
               "startsAt": "2026-01-01T00:00:00Z", "annotations": {}}]
    with serving(body=json.dumps(alerts).encode()) as srv:
        book = AlertBook()
        puller = AlertPuller(book, ["A"], alertmanager_url=srv.url, timeout=2)
        try:
            assert puller.poll() is None and puller.poll() is None
        finally:
            puller.close()
        assert (srv.requests, srv.connections) == (2, 1)
        assert [a.name for a in book.snapshot().alerts] == ["A"]
    puller = AlertPuller(AlertBook(), ["A"], alertmanager_url=f"http://127.0.0.1:{free_port()}",
                         timeout=1)
    try:
        error = puller.poll()
    finally:
        puller.close()
    assert error is not None and "refused" in error.lower()


# --- a poll cycle's GETs at once (`get_many`, the `http` source's `read_many`) -------------

def test_get_many_answers_every_url_bounded_per_host_and_reuses_connections() -> None:
    with serving(delay=0.02) as srv, HttpClient(per_host=3) as http:
        urls = [f"{srv.url}/health?h={i}" for i in range(24)]
        got = http.get_many(urls + urls[:2], 2)  # a URL asked twice is fetched once
        assert sorted(got) == sorted(urls)
        assert all(isinstance(a, HttpAnswer) and a.status == 200
                   and json.loads(a.body)["vram"] == 1234 for a in got.values())
        assert srv.requests == 24
        assert srv.most_open <= 3 and srv.connections <= 3
        opened = srv.connections
        assert len(http.get_many(urls, 2)) == 24  # the next poll: the same connections
        assert (srv.requests, srv.connections) == (48, opened)


def test_get_many_returns_each_failure_as_one_error_beside_the_answers() -> None:
    refused = f"http://127.0.0.1:{free_port()}/health"
    with serving(status=503) as bad, serving(body=b"x" * 5000) as big, \
            serving(delay=1.5) as slow, HttpClient() as http:
        started = time.monotonic()
        got = http.get_many([refused, f"{bad.url}/h", f"{big.url}/b", f"{slow.url}/s",
                             "ftp://example.org/x"], 0.4, limit=100)
        assert time.monotonic() - started < 1.2
    assert isinstance(got[refused], HttpUnavailable) and "refused" in str(got[refused]).lower()
    answer = got[f"{bad.url}/h"]
    assert isinstance(answer, HttpAnswer) and (answer.status, answer.ok) == (503, False)
    assert "over 100 bytes" in str(got[f"{big.url}/b"])
    assert "timed out" in str(got[f"{slow.url}/s"])
    assert isinstance(got["ftp://example.org/x"], HttpUnavailable)


def test_a_read_queued_past_its_timeout_behind_busy_connections_is_busy_not_hung() -> None:
    with serving(delay=0.3) as srv, HttpClient(per_host=1) as http:
        urls = [f"{srv.url}/x{i}" for i in range(6)]
        started = time.monotonic()
        got = http.get_many(urls, 0.5)
        took = time.monotonic() - started
    answered = [u for u in urls if isinstance(got[u], HttpAnswer)]
    busy = [u for u in urls if "busy" in str(got[u])]
    assert answered[:1] == urls[:1] and len(answered) + len(busy) == 6 and busy
    assert took < 1.5  # not six reads one after the other at their full timeout


def test_the_http_source_reads_a_cycle_in_one_batch_one_get_per_distinct_url() -> None:
    hosts = [Host(f"h{i}", {}) for i in range(20)]
    with serving() as srv, HttpClient() as http:
        vram = metric("http", url=f"{srv.url}/h/{{{{ host }}}}", field="vram")
        status = metric("http", url=f"{srv.url}/h/{{{{ host }}}}", expect={"status": "ok"})
        missing = metric("http", url=f"{srv.url}/h/{{{{ host }}}}", field="nope")
        ctx = ReadContext(host=hosts[0], hostvars={h.name: {} for h in hosts}, phase=1,
                          run_id="r", elapsed=0.0, timeout=2.0, memo=CycleMemo(), http=http)
        assert batched(vram) and not batched(metric("http", url="x", field="v", **{"from": "a"}))
        got = [read_hosts(m, hosts, ctx) for m in (vram, status, missing)]
        assert srv.requests == 20  # three metrics, one GET per host's URL in the cycle
        one = [read_metric(m, context(http, "h3")) for m in (vram, status, missing)]
    assert [g["h3"] for g in got] == one  # the same readings as one host's own read
    assert {r.value for r in got[0].values()} == {1234.0}
    assert {r.value for r in got[1].values()} == {1.0}
    assert all(r.value is None and "no numeric field nope" in (r.error or "")
               for r in got[2].values())


def test_a_refused_batch_is_no_data_for_each_host_and_fails_passfail() -> None:
    url = f"http://127.0.0.1:{free_port()}/{{{{ host }}}}"
    hosts = [Host("a", {}), Host("b", {})]
    with HttpClient() as http:
        ctx = ReadContext(host=hosts[0], hostvars={"a": {}, "b": {}}, phase=1, run_id="r",
                          elapsed=0.0, timeout=1.0, memo=CycleMemo(), http=http)
        number = read_hosts(metric("http", url=url, field="v"), hosts, ctx)
        passfail = read_hosts(metric("http", url=url, expect={"ok": True}), hosts, ctx)
    assert all(r.value is None and "refused" in (r.error or "").lower()
               for r in number.values())
    assert all(r.value == 0.0 and "refused" in (r.error or "").lower()
               for r in passfail.values())


def test_exporter_read_many_scrapes_each_distinct_url_once_in_one_batch() -> None:
    body = b'X{Hostname="a"} 1\nX{Hostname="b"} 2\n'
    hosts = [Host("a", {}), Host("b", {})]
    with serving(body=body, ctype="text/plain; version=0.0.4") as one, \
            serving(body=body, ctype="text/plain; version=0.0.4") as two, HttpClient() as http:
        ctx = ReadContext(host=hosts[0], hostvars={"a": {"u": one.url}, "b": {"u": two.url}},
                          phase=1, run_id="r", elapsed=0.0, timeout=2.0, memo=CycleMemo(),
                          http=http)
        m = metric("exporter", url="{{ vars.u }}/metrics",
                   series='X{Hostname="{{ host }}"}')
        got = read_hosts(m, hosts, ctx)
        assert (one.requests, two.requests) == (1, 1)
    assert (got["a"].value, got["b"].value) == (1.0, 2.0)
