"""The push receiver: Alertmanager's webhook (`webhook_configs`) posts to `POST /alerts`.

A forged push could roll a production phase back, and a huge one could exhaust the
orchestrator mid-migration, so each request is checked in this order and refused
before anything is read that need not be:

1. path `/alerts` and method POST, else 404 / 405;
2. `Authorization: Bearer <token>` (constant-time compare) whenever a token is
   configured, and a token *must* be configured when `listen` is not loopback: 401;
3. a `Content-Length` (no chunked bodies: 411), at most 1 MiB: 413, checked before the
   body is read, and the read itself capped at that length;
4. the body must be Alertmanager webhook JSON, version "4": 400.

A refused request changes nothing in the book and is logged once, one line, without
the token. An accepted one updates the book before the 200 goes out, so a 200 means
the trigger has already seen it.

`AlertReceiver` never listens from its constructor: its owner calls `start()` (bind,
serve in a thread) and `close()`, or uses it as a context manager.
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from orchestrator._exceptions import ConfigError, Problem
from orchestrator.core import timestamps
from orchestrator.core.hostport import is_loopback_host, split_host_port
from orchestrator.core.model import AlertmanagerConfig
from orchestrator.core.supervision import spawn
from orchestrator.metrics.alerts.book import PUSH, AlertBook, FiringAlert

MAX_BODY = 1024 * 1024  # bytes; Alertmanager's grouped payloads are a few KiB
PATH = "/alerts"
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
WEBHOOK_VERSION = "4"


class WebhookError(ValueError):
    """The body is not an Alertmanager webhook payload (answered 400)."""


def parse_time(value: Any, what: str) -> datetime | None:
    """RFC 3339 from Go (`2026-11-23T23:58:00.123456789Z`); Go's zero time means unset."""
    if not isinstance(value, str):
        raise WebhookError(f"{what} must be an RFC 3339 string")
    try:
        when = timestamps.parse_time(value, assume_utc=False)
    except ValueError as exc:
        raise WebhookError(f"{what}: {exc}") from exc
    return None if when.year <= 1 else when


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise WebhookError(f"{what} must be an object of strings")
    return dict(value)


def parse_webhook(body: bytes) -> list[tuple[str, FiringAlert]]:
    """Alertmanager webhook JSON -> [(status, alert)]; WebhookError when it is not that."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise WebhookError("not an Alertmanager webhook payload (expected a JSON object)")
    if doc.get("version") != WEBHOOK_VERSION:
        raise WebhookError(f"webhook version must be {WEBHOOK_VERSION!r}, "
                           f"not {doc.get('version')!r}")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise WebhookError("'alerts' must be a list")
    out: list[tuple[str, FiringAlert]] = []
    for i, item in enumerate(alerts):
        what = f"alerts[{i}]"
        if not isinstance(item, dict):
            raise WebhookError(f"{what} must be an object")
        status = item.get("status")
        if status not in ("firing", "resolved"):
            raise WebhookError(f"{what}.status must be firing or resolved, not {status!r}")
        labels = _string_map(item.get("labels"), f"{what}.labels")
        if not labels.get("alertname"):
            raise WebhookError(f"{what}.labels has no alertname")
        annotations = _string_map(item.get("annotations", {}), f"{what}.annotations")
        since = parse_time(item.get("startsAt"), f"{what}.startsAt")
        generator = item.get("generatorURL", "")
        out.append((status, FiringAlert(labels["alertname"], labels, since, PUSH, annotations,
                                        generator if isinstance(generator, str) else "")))
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds up close()
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 log: Callable[[str], None]) -> None:
        self.log = log  # before binding: an error while serving is logged through it
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line instead of socketserver's traceback on stderr (a dropped client)."""
        import sys

        exc = sys.exc_info()[1]
        self.log(f"alerts: request from {client_address[0]} failed: "
                 f"{type(exc).__name__}: {exc}")


class _Server6(_Server):
    address_family = socket.AF_INET6


def _ignore(line: str) -> None:
    return None


class AlertReceiver:
    """`POST /alerts` into an `AlertBook`. See the module docstring for the checks."""

    def __init__(self, book: AlertBook, listen: str, token: str | None = None,
                 log: Callable[[str], None] = _ignore, line: int = 0) -> None:
        try:
            self.host, self.port = split_host_port(listen)
        except ValueError as exc:
            raise ConfigError([Problem("migration.yaml", line,
                                       f"alertmanager: listen: {exc}")]) from exc
        if not token and not is_loopback_host(self.host):
            raise ConfigError([Problem("migration.yaml", line,
                                       f"alertmanager: listen {listen} is not a loopback "
                                       "address: set token_env (a Bearer token is required)")])
        self.book = book
        self.listen = listen
        self._token = token.encode() if token else None
        self.log = log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: answers given, by HTTP status code (accepted and refused)
        self.counts: dict[int, int] = {}

    @classmethod
    def from_config(cls, config: AlertmanagerConfig, book: AlertBook,
                    log: Callable[[str], None] = _ignore,
                    environ: Mapping[str, str] = os.environ) -> AlertReceiver:
        """The receiver `alertmanager:` asks for; ConfigError when its token is not set."""
        if not config.listen:
            raise ConfigError([Problem("migration.yaml", config.line,
                                       "alertmanager: no listen address for the receiver")])
        token = config.token
        if token is None and config.token_env:
            token = environ.get(config.token_env, "").strip()
            if not token:
                raise ConfigError([Problem(
                    "migration.yaml", config.line,
                    f"alertmanager: token_env {config.token_env} is not set in the "
                    "environment: the receiver needs its Bearer token")])
        return cls(book, config.listen, token, log, config.line)

    @property
    def requires_token(self) -> bool:
        return self._token is not None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): the real port when `listen` asked for port 0."""
        if self._server is None:
            return self.host, self.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else (host or "0.0.0.0")
        return f"http://{shown}:{port}{PATH}"

    # --- lifetime ---------------------------------------------------------------------
    def start(self) -> None:
        """Bind and serve in a background thread; ConfigError if the address is taken."""
        if self._server is not None:
            return
        cls = _Server6 if ":" in self.host else _Server
        try:
            server = cls((self.host, self.port), self._handler(), self.log)
        except OSError as exc:
            raise ConfigError([Problem("migration.yaml", 0,
                                       f"alertmanager: cannot listen on {self.listen}: "
                                       f"{exc.strerror or exc}")]) from exc
        self._server = server
        self._thread = spawn("alert-receiver", server.serve_forever, 0.1)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> AlertReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ---------------------------------------------------------------------
    def _count(self, code: int) -> None:
        with self._lock:
            self.counts[code] = self.counts.get(code, 0) + 1

    def _authorized(self, header: str | None) -> tuple[bool, str]:
        if self._token is None:
            return True, ""
        if not header:
            return False, "missing bearer token"
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return False, "not a bearer token"
        if not hmac.compare_digest(given.strip().encode(), self._token):
            return False, "wrong bearer token"
        return True, ""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: Alertmanager reuses connections
            timeout = REQUEST_TIMEOUT
            server_version = "migrate-alerts"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                return None  # refusals are logged once through owner.log, nothing else

            def address_string(self) -> str:  # never a reverse DNS lookup
                return str(self.client_address[0])

            def answer(self, code: int, message: str, close: bool = False,
                       headers: Mapping[str, str] | None = None) -> None:
                body = json.dumps({"status": "ok" if code == 200 else "error",
                                   "message": message}).encode()
                owner._count(code)  # before the answer leaves: a client may check at once
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def refuse(self, code: int, why: str, close: bool = True,
                       headers: Mapping[str, str] | None = None) -> None:
                owner.log(f"alerts: refused {self.command} {urlsplit(self.path).path[:100]} "
                          f"from {self.address_string()}: {code} {why}")
                self.answer(code, why, close, headers)

            def do_POST(self) -> None:
                if urlsplit(self.path).path != PATH:
                    self.refuse(404, f"no such path (alerts go to POST {PATH})")
                    return
                ok, why = owner._authorized(self.headers.get("Authorization"))
                if not ok:
                    self.refuse(401, why, headers={"WWW-Authenticate": "Bearer"})
                    return
                if self.headers.get("Transfer-Encoding"):
                    self.refuse(411, "a Content-Length is required (no chunked bodies)")
                    return
                raw = self.headers.get("Content-Length")
                if raw is None:
                    self.refuse(411, "a Content-Length is required")
                    return
                try:
                    length = int(raw)
                    if length < 0:
                        raise ValueError(raw)
                except ValueError:
                    self.refuse(400, f"bad Content-Length {raw[:20]!r}")
                    return
                if length > MAX_BODY:
                    self.refuse(413, f"body of {length} bytes is over the limit of "
                                     f"{MAX_BODY} bytes")
                    return
                try:
                    body = self.rfile.read(min(length, MAX_BODY))
                except OSError as exc:  # the client stalled past REQUEST_TIMEOUT
                    self.refuse(408, f"body not received: {exc}")
                    return
                if len(body) != length:
                    self.refuse(400, f"body ended after {len(body)} of {length} bytes")
                    return
                try:
                    updates = parse_webhook(body)
                except WebhookError as exc:
                    self.refuse(400, f"not Alertmanager webhook JSON: {exc}"[:300],
                                close=False)
                    return
                owner.book.apply_push(updates)
                self.answer(200, f"{len(updates)} alert(s) recorded")

            def _not_allowed(self) -> None:
                self.refuse(405, f"only POST {PATH}", headers={"Allow": "POST"})

            do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed

        return Handler

