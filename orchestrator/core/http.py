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


class HttpClient:
    """Keep-alive connections, reused across polls, bounded per host.

    One urllib3 connection pool per origin (scheme, host, port), kept in a small LRU of
    `hosts`; a request goes straight to its origin's pool with the URL's path (the
    PoolManager's per-request URL parsing and pool-key work was a fifth of a read's CPU
    at 400 reads a second)."""

    def __init__(self, per_host: int = PER_HOST, hosts: int = HOSTS,
                 user_agent: str = "migrate") -> None:
        self.per_host = per_host
        self.hosts = hosts
        self.headers = {"User-Agent": user_agent}
        self._pools: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._timeouts: dict[float, Any] = {}
        self._lock = threading.Lock()

    def _pool(self, scheme: str, netloc: str) -> Any:
        key = (scheme, netloc)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            import urllib3

            pool = urllib3.connection_from_url(
                f"{scheme}://{netloc}", maxsize=self.per_host, block=True, retries=False,
                headers=self.headers)
            self._pools[key] = pool
            while len(self._pools) > self.hosts:
                self._pools.popitem(last=False)[1].close()
            return pool

    def _timeout(self, seconds: float) -> Any:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            import urllib3

            timeout = urllib3.Timeout(connect=seconds, read=seconds)
            if len(self._timeouts) < 64:
                self._timeouts[seconds] = timeout
        return timeout

    def request(self, method: str, url: str, timeout: float, *, body: bytes | None = None,
                headers: dict[str, str] | None = None, limit: int = MAX_BODY) -> HttpAnswer:
        """One request; the answer whatever its status, or HttpUnavailable."""
        import urllib3

        try:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("not an http(s) URL")
            pool = self._pool(parts.scheme, parts.netloc)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            resp = pool.urlopen(
                method, target, body=body,
                headers={**self.headers, **headers} if headers else None,
                retries=False, redirect=False, assert_same_host=False,
                timeout=self._timeout(timeout), pool_timeout=timeout,
                preload_content=False, release_conn=False)
        except urllib3.exceptions.HTTPError as exc:
            raise HttpUnavailable(f"{method} {url}: {_reason(exc)}") from exc
        except (OSError, ValueError, LookupError) as exc:  # a URL that cannot be used
            raise HttpUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        try:
            data = resp.read(limit + 1)
            if len(data) > limit:
                resp.drain_conn()  # too big to keep: drop the connection, not the pool
                raise HttpUnavailable(f"{method} {url}: body over {limit} bytes")
            return HttpAnswer(resp.status, data)
        except urllib3.exceptions.HTTPError as exc:
            raise HttpUnavailable(f"{method} {url}: {_reason(exc)}") from exc
        except OSError as exc:
            raise HttpUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        finally:
            resp.release_conn()

    def get(self, url: str, timeout: float, headers: dict[str, str] | None = None,
            limit: int = MAX_BODY) -> HttpAnswer:
        return self.request("GET", url, timeout, headers=headers, limit=limit)

    def post_json(self, url: str, payload: Any, timeout: float) -> HttpAnswer:
        return self.request("POST", url, timeout, body=json.dumps(payload).encode(),
                            headers={"Content-Type": "application/json"})

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    """urllib3's innermost reason, short: 'Connection refused', 'read timed out'."""
    import urllib3

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
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "…"
