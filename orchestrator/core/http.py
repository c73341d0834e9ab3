"""One pooled HTTP client for the plain HTTP that migrate speaks: the `http` and
`exporter` metric sources, Alertmanager's API and the webhook notifier.

Why pooled: `migrate watch` over 200 hosts reads about 400 URLs a second. Opening a
connection for each (urllib) cost more CPU than everything else the watch does; with
keep-alive, a poll reuses the connections the previous poll opened. The pool is
bounded per host (scheme, host, port): at most `per_host` connections to one server,
and a read that finds them all busy waits for one (within its own timeout) rather than
opening more, so a fleet whose endpoints sit behind one address cannot make migrate
open hundreds of sockets to it. At most `hosts` servers' pools are kept; the least
recently used one's connections are closed first (a fleet of 2,000 hosts each with its
own endpoint is read through `prometheus` or `exporter` at that scale, not `http`).

Errors are translated here, at the boundary: every failure to get an answer (refused,
timeout, DNS, TLS, a malformed URL, a body over the limit) is one `HttpUnavailable`
carrying a short reason, so callers turn one exception into "no data". Non-2xx answers
are answers (`HttpAnswer.status`), not errors. No retries: the next poll is the retry,
and the notifier has its own backoff.

urllib3 is imported on the first request, so building a client costs nothing on the
paths that never speak HTTP (`migrate status`).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: The largest body read; a bigger one is no answer (a misconfigured URL, not a metric).
MAX_BODY = 16 * 1024 * 1024
PER_HOST = 16  # the trigger monitor's readers: one connection each at most
HOSTS = 64


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)


class HttpUnavailable(Exception):
    """No answer from a URL; the message says why, in one line."""


class _Origin:
    """The kept-alive connections to one origin: at most `size` at once, idle ones on a
    stack (the most recently used first, the one least likely to have been closed)."""

    def __init__(self, scheme: str, host: str, port: int | None, size: int) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.slots = threading.BoundedSemaphore(size)
        self.idle: list[Any] = []
        self.lock = threading.Lock()

    def take(self, timeout: float) -> Any:
        """A connection (kept-alive when one is idle), or None when all stay busy."""
        if not self.slots.acquire(timeout=timeout):
            return None
        with self.lock:
            conn = self.idle.pop() if self.idle else None
        if conn is not None and conn.sock is not None and not conn.is_connected:
            conn.close()  # the server closed it while idle: reconnect on the next request
        if conn is None:
            from urllib3.connection import HTTPConnection, HTTPSConnection

            cls = HTTPSConnection if self.scheme == "https" else HTTPConnection
            conn = cls(self.host, self.port, timeout=timeout)
        return conn

    def give_back(self, conn: Any, keep: bool) -> None:
        if keep:
            with self.lock:
                self.idle.append(conn)
        else:
            conn.close()
        self.slots.release()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


class HttpClient:
    """Keep-alive connections, reused across polls, bounded per host.

    urllib3's connection classes (its TLS, its connect errors) under a pool of ours:
    one bounded stack of connections per origin (scheme, host, port), the origins kept
    in a small LRU of `hosts`. urllib3's own pool manager was measured at twice the CPU
    of a read (URL parsing, retry and timeout objects per request) for nothing migrate
    uses (retries, redirects, proxies)."""

    def __init__(self, per_host: int = PER_HOST, hosts: int = HOSTS,
                 user_agent: str = "migrate") -> None:
        self.per_host = per_host
        self.hosts = hosts
        self.headers = {"User-Agent": user_agent}
        self._origins: OrderedDict[tuple[str, str], _Origin] = OrderedDict()
        self._lock = threading.Lock()

    def _origin(self, scheme: str, netloc: str, host: str, port: int | None) -> _Origin:
        key = (scheme, netloc)
        with self._lock:
            origin = self._origins.get(key)
            if origin is not None:
                self._origins.move_to_end(key)
                return origin
            origin = self._origins[key] = _Origin(scheme, host, port, self.per_host)
            while len(self._origins) > self.hosts:
                self._origins.popitem(last=False)[1].close()
            return origin

    def request(self, method: str, url: str, timeout: float, *, body: bytes | None = None,
                headers: dict[str, str] | None = None, limit: int = MAX_BODY) -> HttpAnswer:
        """One request; the answer whatever its status, or HttpUnavailable."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
            if parts.scheme not in ("http", "https") or not host:
                raise ValueError("not an http(s) URL")
        except ValueError as exc:
            raise HttpUnavailable(f"{method} {url}: {exc}") from exc
        origin = self._origin(parts.scheme, parts.netloc, host, port)
        conn = origin.take(timeout)
        if conn is None:
            raise HttpUnavailable(f"{method} {url}: every connection to the host is busy")
        keep = False
        try:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, body=body,
                         headers={**self.headers, **headers} if headers else self.headers,
                         preload_content=False)
            resp = conn.getresponse()
            data = resp.read(limit + 1)
            if len(data) > limit:
                raise HttpUnavailable(f"{method} {url}: body over {limit} bytes")
            keep = conn.sock is not None  # http.client dropped it when the server said close
            return HttpAnswer(resp.status, data)
        except HttpUnavailable:
            raise
        except Exception as exc:  # urllib3's and the socket's errors, one kind out
            raise HttpUnavailable(f"{method} {url}: {_reason(exc)}") from exc
        finally:
            origin.give_back(conn, keep)

    def get(self, url: str, timeout: float, headers: dict[str, str] | None = None,
            limit: int = MAX_BODY) -> HttpAnswer:
        return self.request("GET", url, timeout, headers=headers, limit=limit)

    def post_json(self, url: str, payload: Any, timeout: float) -> HttpAnswer:
        return self.request("POST", url, timeout, body=json.dumps(payload).encode(),
                            headers={"Content-Type": "application/json"})

    def close(self) -> None:
        with self._lock:
            origins = list(self._origins.values())
            self._origins.clear()
        for origin in origins:
            origin.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    """urllib3's innermost reason, short: 'Connection refused', 'read timed out'."""
    import urllib3

    if isinstance(exc, TimeoutError):  # the socket's read timeout (socket.timeout)
        return "read timed out"

    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # before ConnectTimeout:
        text = str(exc)                                          # it is one
        return text.split("] ", 1)[-1] if "] " in text else text
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "read timed out"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "connect timed out"
    if isinstance(exc, urllib3.exceptions.EmptyPoolError):
        return "every connection to the host is busy"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError | ValueError) and not isinstance(exc, urllib3.exceptions.HTTPError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 200 else text[:200] + "…"
