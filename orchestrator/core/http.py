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

A poll cycle's many GETs (`get_many`: every host's URL of an `http` or `exporter`
metric) go through libcurl's multi interface (pycurl) instead: all of them in flight at
once from one thread, its own keep-alive connections, the same per-host bound. Through
urllib3 and a thread pool a GET cost about 0.2 ms of CPU (http.client's header parsing,
urllib3's response objects, a thread hand-off each); through libcurl about 0.04 ms,
which is what brings `watch` over 200 hosts under its CPU goal.

urllib3 and pycurl are imported on first use, so building a client costs nothing on the
paths that never speak HTTP (`migrate status`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: The largest body read; a bigger one is no answer (a misconfigured URL, not a metric).
MAX_BODY = 16 * 1024 * 1024
PER_HOST = 16  # the trigger monitor's readers: one connection each at most
HOSTS = 64
#: Connections a batch (`get_many`) keeps alive for the next poll, all origins together:
#: a fleet of 200 hosts each with its own endpoint reuses them all.
KEPT = 256
#: Idle batches kept (one per metric read at once: a cycle's distinct URL sets)
IDLE_BATCHES = 4


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
        self._batches: list[_Batch] = []  # idle ones, each with its kept-alive connections

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
        parts, host, port = _split(url, method)
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

    def get_many(self, urls: Sequence[str], timeout: float,
                 headers: dict[str, str] | None = None,
                 limit: int = MAX_BODY) -> dict[str, HttpAnswer | HttpUnavailable]:
        """GET every one of `urls` at once: each URL's answer, or the `HttpUnavailable`
        saying why there is none (returned, not raised). All within `timeout`, at most
        `per_host` connections to one origin at a time (the rest wait their turn within
        that timeout), kept alive for the next call."""
        out: dict[str, HttpAnswer | HttpUnavailable] = {}
        todo = []
        for url in dict.fromkeys(urls):
            try:
                parts, _, _ = _split(url, "GET")
            except HttpUnavailable as exc:
                out[url] = exc
                continue
            todo.append((url, f"{parts.scheme}://{parts.netloc}"))
        if not todo:
            return out
        with self._lock:
            batch = self._batches.pop() if self._batches else None
        if batch is None:
            batch = _Batch(self.per_host, self.headers)
        try:
            out.update(batch.get(todo, timeout, headers or {}, limit))
        finally:
            with self._lock:
                if len(self._batches) < IDLE_BATCHES:
                    self._batches.append(batch)
                    batch = None
            if batch is not None:
                batch.close()
        return out

    def post_json(self, url: str, payload: Any, timeout: float) -> HttpAnswer:
        return self.request("POST", url, timeout, body=json.dumps(payload).encode(),
                            headers={"Content-Type": "application/json"})

    def close(self) -> None:
        """Close every kept-alive connection, the batches' too. The client stays usable:
        a later request opens new ones."""
        with self._lock:
            origins = list(self._origins.values())
            self._origins.clear()
            batches, self._batches = self._batches, []
        for origin in origins:
            origin.close()
        for batch in batches:
            batch.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(url: str, method: str) -> tuple[Any, str, int | None]:
    """The URL's parts, host and port; HttpUnavailable when it is no http(s) URL."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("not an http(s) URL")
    except ValueError as exc:
        raise HttpUnavailable(f"{method} {url}: {exc}") from exc
    return parts, host, port


class _Body:
    """A transfer's body as it arrives; past `limit` bytes the transfer is aborted."""

    __slots__ = ("parts", "size", "limit")

    def __init__(self, limit: int) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit

    def write(self, data: bytes) -> int | None:
        self.size += len(data)
        if self.size > self.limit:
            return 0  # fewer bytes taken than given: libcurl aborts (CURLE_WRITE_ERROR)
        self.parts.append(data)
        return None


class _Batch:
    """One libcurl multi handle and its easy handles: many GETs driven from one thread,
    the connections kept alive in the multi handle's cache between calls. Used by one
    thread at a time (the client hands each call an idle one)."""

    def __init__(self, per_host: int, headers: dict[str, str]) -> None:
        import pycurl

        self.pycurl = pycurl
        self.multi = pycurl.CurlMulti()
        self.per_host = per_host
        self.multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, per_host)
        self.multi.setopt(pycurl.M_MAXCONNECTS, KEPT)
        self.base = headers
        self.idle: list[Any] = []
        self.ca = _ca_paths()

    def _handle(self) -> Any:
        if self.idle:
            return self.idle.pop()
        pycurl = self.pycurl
        c = pycurl.Curl()
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.PROXY, "")  # as urllib3's connections: no proxy from the environment
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        c.setopt(pycurl.NOPROGRESS, 1)
        cafile, capath = self.ca
        if cafile:
            c.setopt(pycurl.CAINFO, cafile)
        if capath:
            c.setopt(pycurl.CAPATH, capath)
        return c

    def get(self, urls: list[tuple[str, str]], timeout: float, headers: dict[str, str],
            limit: int) -> dict[str, HttpAnswer | HttpUnavailable]:
        """GET each (url, origin): at most `per_host` in flight to one origin, the next
        one started as one ends (so each transfer's timeout counts from its own start, as
        a pooled connection's does); one that waits longer than `timeout` for its turn
        gets no answer, as a read that finds every connection busy."""
        pycurl, multi = self.pycurl, self.multi
        lines = [f"{k}: {v}" for k, v in {**self.base, **headers}.items()]
        ms = max(1, int(timeout * 1000))
        queues: dict[str, deque[str]] = {}
        for url, origin in urls:
            queues.setdefault(origin, deque()).append(url)
        busy = dict.fromkeys(queues, 0)
        running: dict[Any, tuple[str, str, _Body]] = {}
        out: dict[str, HttpAnswer | HttpUnavailable] = {}

        def feed(origin: str) -> None:
            queue = queues[origin]
            while queue and busy[origin] < self.per_host:
                url = queue.popleft()
                c, body = self._handle(), _Body(limit)
                c.setopt(pycurl.URL, url)
                c.setopt(pycurl.HTTPHEADER, lines)
                c.setopt(pycurl.WRITEFUNCTION, body.write)
                c.setopt(pycurl.TIMEOUT_MS, ms)
                c.setopt(pycurl.CONNECTTIMEOUT_MS, ms)
                multi.add_handle(c)
                running[c] = (url, origin, body)
                busy[origin] += 1

        for origin in queues:
            feed(origin)
        waited_out = time.monotonic() + timeout  # a queued GET not started by then: busy
        try:
            while running:
                ret, _ = multi.perform()
                if ret == pycurl.E_CALL_MULTI_PERFORM:
                    continue
                for origin in self._finished(running, out, limit):
                    busy[origin] -= 1
                    feed(origin)
                if time.monotonic() > waited_out:
                    for queue in queues.values():
                        while queue:
                            url = queue.popleft()
                            out[url] = HttpUnavailable(
                                f"GET {url}: every connection to the host is busy")
                if running:  # until a socket is ready or libcurl's next timer is due
                    due = multi.timeout()  # ms; -1: no timer set
                    if due:
                        multi.select(1.0 if due < 0 else min(due / 1000, 1.0))
        finally:
            for c, (url, _, _) in running.items():  # an error of ours: no answer
                multi.remove_handle(c)
                self.idle.append(c)
                out[url] = HttpUnavailable(f"GET {url}: not completed")
            for queue in queues.values():
                for url in queue:
                    out[url] = HttpUnavailable(f"GET {url}: not started")
        return out

    def _finished(self, running: dict[Any, tuple[str, str, _Body]],
                  out: dict[str, HttpAnswer | HttpUnavailable], limit: int) -> list[str]:
        """Collect the transfers libcurl has ended; the origins they free."""
        pycurl, multi = self.pycurl, self.multi
        freed = []
        while True:
            queued, ok, failed = multi.info_read()
            for c in ok:
                url, origin, body = running.pop(c)
                out[url] = HttpAnswer(c.getinfo(pycurl.RESPONSE_CODE), b"".join(body.parts))
                multi.remove_handle(c)
                self.idle.append(c)
                freed.append(origin)
            for c, code, message in failed:
                url, origin, body = running.pop(c)
                why = f"body over {limit} bytes" if body.size > limit \
                    else _curl_reason(c, code, message)
                out[url] = HttpUnavailable(f"GET {url}: {why}")
                multi.remove_handle(c)
                self.idle.append(c)
                freed.append(origin)
            if not queued:
                return freed

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle = []
        self.multi.close()


def _ca_paths() -> tuple[str | None, str | None]:
    """The CA file and directory Python's ssl module verifies with (urllib3's
    default), for libcurl, whose built-in paths may not exist on this system."""
    import ssl

    paths = ssl.get_default_verify_paths()
    cafile = paths.cafile or paths.openssl_cafile
    capath = paths.capath or paths.openssl_capath
    return (cafile if cafile and os.path.isfile(cafile) else None,
            capath if capath and os.path.isdir(capath) else None)


def _curl_reason(c: Any, code: int, message: str) -> str:
    """libcurl's error, in the words `_reason` uses for urllib3's: 'Connection refused',
    'read timed out', 'connect timed out'."""
    import pycurl

    errno = c.getinfo(pycurl.OS_ERRNO)
    if code == pycurl.E_OPERATION_TIMEDOUT:
        connected = c.getinfo(pycurl.CONNECT_TIME) > 0
        return "read timed out" if connected else "connect timed out"
    if code == pycurl.E_COULDNT_CONNECT and errno:
        return os.strerror(errno)
    text = message or f"libcurl error {code}"
    return text if len(text) <= 200 else text[:200] + "…"


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
