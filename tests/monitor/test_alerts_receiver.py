"""The push receiver over real HTTP on loopback: authorised pushes reach the book (and its
callback within 100 ms); forged, malformed and oversized ones are refused, change
nothing and are logged once each."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.config.inventory import Host
from orchestrator.core.model import AlertmanagerConfig
from orchestrator.metrics.alerts.book import AlertBook, BookChange
from orchestrator.metrics.alerts.receiver import MAX_BODY, AlertReceiver
from tests.support.webhook import payload

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-tests"
MAIN = Host("main", {"ansible_host": "127.0.0.1"})


@contextmanager
def receiver(token: str | None = TOKEN) -> Iterator[tuple[AlertReceiver, list[str]]]:
    lines: list[str] = []
    book = AlertBook(log=lines.append)
    rx = AlertReceiver(book, "127.0.0.1:0", token, log=lines.append)
    with rx:
        yield rx, lines


def post(rx: AlertReceiver, body: bytes, headers: dict[str, str] | None = None,
         path: str = "/alerts", method: str = "POST") -> tuple[int, dict[str, Any]]:
    host, port = rx.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else {}
    finally:
        conn.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def firing(rx: AlertReceiver) -> bool:
    return rx.book.firing_for("MMAMigrationRollbackTrigger", {}, "instance", MAIN) is not None


def test_an_authorised_push_fires_the_callback_within_100ms_and_resolved_clears() -> None:
    with receiver() as (rx, lines):
        got = threading.Event()
        seen: list[tuple[float, BookChange]] = []

        def callback(change: BookChange) -> None:
            seen.append((time.perf_counter(), change))
            got.set()

        rx.book.subscribe(callback)
        sent = time.perf_counter()
        code, answer = post(rx, payload(), bearer())
        assert code == 200 and answer["status"] == "ok", answer
        assert got.wait(1)
        assert seen[0][0] - sent < 0.1
        assert [a.name for a in seen[0][1].fired] == ["MMAMigrationRollbackTrigger"]
        assert firing(rx)
        found = rx.book.firing_for("MMAMigrationRollbackTrigger",
                                   {"component": "ModelManagerAgent"}, "instance", MAIN)
        assert found is not None and found.since_text() == "2026-11-23T23:58:00Z"
        code, _ = post(rx, payload("resolved"), bearer("s3cret-token-for-tests"))
        assert code == 200 and not firing(rx)
        assert lines == []  # accepted pushes are not refusals: nothing logged
        assert rx.counts == {200: 2}


@pytest.mark.parametrize(("headers", "why"), [
    ({}, "missing bearer token"),
    ({"Authorization": "Bearer wrong"}, "wrong bearer token"),
    ({"Authorization": f"Bearer {TOKEN}x"}, "wrong bearer token"),
    ({"Authorization": f"Basic {TOKEN}"}, "not a bearer token"),
    ({"Authorization": "Bearer "}, "not a bearer token"),
])
def test_a_forged_push_gets_401_changes_nothing_and_is_logged_once(
        headers: dict[str, str], why: str) -> None:
    with receiver() as (rx, lines):
        version = rx.book.version
        code, answer = post(rx, payload(), headers)
        assert code == 401 and answer["message"] == why
        assert rx.book.version == version and not firing(rx)
        assert len(lines) == 1 and f"401 {why}" in lines[0], lines
        assert TOKEN not in lines[0]  # the log never carries a token, right or wrong


@pytest.mark.parametrize(("body", "why"), [
    (b"{not json", "not JSON"),
    (b'{"version": "3", "alerts": []}', "webhook version must be '4'"),
    (b'{"version": "4"}', "'alerts' must be a list"),
    (b'[{"labels": {"alertname": "A"}}]', "expected a JSON object"),
])
def test_a_body_that_is_not_alertmanager_json_gets_400(body: bytes, why: str) -> None:
    with receiver() as (rx, lines):
        version = rx.book.version
        code, answer = post(rx, body, bearer())
        assert code == 400 and why in answer["message"], answer
        assert rx.book.version == version
        assert len(lines) == 1 and "400 not Alertmanager webhook JSON" in lines[0]


def raw_post(rx: AlertReceiver, length: int, body: bytes = b"", token: str | None = TOKEN,
             ) -> tuple[str, float]:
    """POST with a hand-written Content-Length; the status line and how long it took.
    The server may answer and close before the body is sent: that is the point."""
    host, port = rx.address
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"POST /alerts HTTP/1.1\r\nHost: x\r\n" + auth
                  + f"Content-Length: {length}\r\n\r\n".encode())
        started = time.monotonic()
        try:
            s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before the body: expected
        answer = s.recv(4096).decode(errors="replace")
        return answer.split("\r\n", 1)[0], time.monotonic() - started


def test_an_oversized_body_gets_413_before_it_is_read() -> None:
    with receiver() as (rx, lines):
        # announce 64 MiB and send none of it: the answer must not wait for the body
        status, took = raw_post(rx, 64 * MAX_BODY)
        assert status == "HTTP/1.1 413 Request Entity Too Large" and took < 2
        status, _ = raw_post(rx, MAX_BODY + 1, b" " * 65536)  # just over 1 MiB
        assert status.startswith("HTTP/1.1 413")
        code, _ = post(rx, payload() + b" " * (MAX_BODY - len(payload())), bearer())
        assert code == 200  # exactly 1 MiB is still fine
        assert len([line for line in lines if " 413 " in line]) == 2
        assert rx.counts[413] == 2 and "1048577 bytes is over the limit" in lines[1]


def test_an_unauthenticated_oversized_push_is_401_first() -> None:
    with receiver() as (rx, lines):
        status, _ = raw_post(rx, MAX_BODY + 1, b" " * 65536, token=None)
        assert status.startswith("HTTP/1.1 401") and len(lines) == 1
        assert rx.book.version == 0


def test_other_paths_methods_and_chunked_bodies_are_refused() -> None:
    with receiver() as (rx, lines):
        assert post(rx, payload(), bearer(), path="/")[0] == 404
        assert post(rx, b"", bearer(), method="GET")[0] == 405
        host, port = rx.address
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.putrequest("POST", "/alerts")
        for k, v in bearer().items():
            conn.putheader(k, v)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"5\r\nhello\r\n0\r\n\r\n")
        assert conn.getresponse().status == 411
        conn.close()
        assert len(lines) == 3 and not firing(rx)


def test_keep_alive_connections_carry_several_pushes() -> None:
    with receiver() as (rx, _):
        host, port = rx.address
        conn = http.client.HTTPConnection(host, port, timeout=5)
        for status in ("firing", "resolved", "firing"):
            conn.request("POST", "/alerts", body=payload(status), headers=bearer())
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
        conn.close()
        assert firing(rx)


def test_no_token_needed_on_loopback_without_token_env() -> None:
    with receiver(token=None) as (rx, _):
        assert not rx.requires_token
        assert post(rx, payload())[0] == 200 and firing(rx)


def test_a_token_is_required_off_loopback_and_from_the_environment() -> None:
    book = AlertBook()
    with pytest.raises(ConfigError, match="not a loopback address: set token_env"):
        AlertReceiver(book, "0.0.0.0:9095", None)
    cfg = AlertmanagerConfig("0.0.0.0:0", "MIGRATE_TEST_ALERT_TOKEN", None, 7)
    with pytest.raises(ConfigError, match=r"migration.yaml:7: alertmanager: token_env "
                                          r"MIGRATE_TEST_ALERT_TOKEN is not set"):
        AlertReceiver.from_config(cfg, book, environ={})
    rx = AlertReceiver.from_config(cfg, book, environ={"MIGRATE_TEST_ALERT_TOKEN": "t"})
    assert rx.requires_token
    loop = AlertmanagerConfig("127.0.0.1:0", None, None, 3)
    assert not AlertReceiver.from_config(loop, book, environ={}).requires_token


def test_a_drill_s_token_comes_in_its_configuration_not_the_environment() -> None:
    """A rehearsal gives its own receiver its token in the configuration: no environment
    variable of the process is set or read; pushes without it are refused."""
    cfg = AlertmanagerConfig("127.0.0.1:0", None, None, token=TOKEN)
    assert TOKEN not in repr(cfg)  # a secret never printed with the configuration
    with AlertReceiver.from_config(cfg, AlertBook(), environ={}) as rx:
        assert rx.requires_token
        assert post(rx, payload())[0] == 401 and not firing(rx)
        assert post(rx, payload(), bearer())[0] == 200 and firing(rx)


def test_the_constructor_does_not_listen_and_a_taken_port_is_a_config_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rx = AlertReceiver(AlertBook(), f"127.0.0.1:{port}", TOKEN)
    with socket.socket() as probe:  # nothing bound yet: the port is still free
        probe.bind(("127.0.0.1", port))
    with rx:
        other = AlertReceiver(AlertBook(), f"127.0.0.1:{port}", TOKEN)
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            other.start()
    rx.close()  # closing twice is harmless


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    book = AlertBook()
    try:
        rx = AlertReceiver(book, "[::1]:0", TOKEN)
        rx.start()
    except ConfigError as exc:
        pytest.skip(f"::1 not usable here: {exc}")
    with rx:
        assert rx.url.startswith("http://[::1]:")
        host, port = rx.address
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("POST", "/alerts", body=payload(), headers=bearer())
        assert conn.getresponse().status == 200
        conn.close()
