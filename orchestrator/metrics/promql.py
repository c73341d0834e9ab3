"""The one Prometheus client: every PromQL query we send goes through `PromQL` here.

Three readers ask Prometheus: the `prometheus` metric source (instant queries, one per
metric per poll cycle), the canary's sample windows (range queries) and the alert pull
without Alertmanager (`ALERTS{...}`). They all use prometheus-api-client's
`PrometheusConnect` through this module, which adds what they need of it:

- one connection pool per Prometheus URL, kept for the client's life (keep-alive
  across polls; up to `pool_size` queries at once without opening a connection each);
- no retries: the next poll is the retry, and a read must end within its timeout
  (the library's default retries 3 times with back-off);
- queries POSTed as a form body (the library's POST still puts the query in the URL,
  and a query batched for 2,000 hosts does not fit every proxy's URL limit);
- errors translated at this boundary into two of ours, both meaning "no data" to the
  caller: `Rejected` (Prometheus answered and refused the query: bad_data, execution
  error, with its own message) and `Unanswered` (refused connection, timeout, HTTP
  error without Prometheus's error body, an answer that is not Prometheus's JSON).

    client = PromQL()
    kind, result = client.instant("http://prom:9090", 'up{job="node"}', timeout=5.0)
    series = client.range("http://prom:9090", "rate(x[1m])", start, end, step=5.0)

Importing this module is cheap: requests and prometheus-api-client are imported when
the first query is sent.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from typing import Any

#: concurrent queries one client sends to one Prometheus over kept connections
POOL_SIZE = 16


class PromQLError(Exception):
    """A query that gave no answer: no data for whoever asked."""


class Rejected(PromQLError):
    """Prometheus answered and refused the query (bad_data, execution error, ...)."""


class Unanswered(PromQLError):
    """Prometheus could not be asked or gave no usable answer."""


def _when(t: float | dt.datetime) -> dt.datetime:
    if isinstance(t, dt.datetime):
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(t, tz=dt.UTC)


def result_type(result: Any) -> str:
    """The resultType of an instant query's `data.result` (the library returns only the
    result): a list of series is a vector (a matrix when they carry `values`), a
    [time, "number"] pair a scalar, a [time, "text"] pair a string."""
    if isinstance(result, list) and len(result) == 2 and isinstance(result[0], int | float) \
            and isinstance(result[1], str):
        try:
            float(result[1])
        except ValueError:
            return "string"
        return "scalar"
    if isinstance(result, list) and all(isinstance(s, dict) for s in result):
        if result and "values" in result[0]:
            return "matrix"
        return "vector"
    raise Unanswered(f"unexpected answer {str(result)[:200]}")


def _root_cause(exc: BaseException) -> BaseException:
    """The error under requests' and urllib3's wrappers (`[Errno 111] Connection
    refused`, not three nested reprs of the connection pool)."""
    seen = {id(exc)}
    while True:
        wrapped = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        nxt = exc.__cause__ or getattr(exc, "reason", None) or wrapped
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


@functools.cache
def _session_class() -> type:
    """A requests.Session that POSTs the query in the body and turns a refused query
    into `Rejected`, built once on first use (requests is imported lazily)."""
    import requests

    class _Session(requests.Session):
        def request(self, method: str, url: str,  # type: ignore[override]
                    params: Any = None, data: Any = None, **kwargs: Any) -> Any:
            if method == "POST" and params and data is None:
                params, data = None, params
            response = super().request(method, url, params=params, data=data, **kwargs)
            if response.status_code != 200:
                try:
                    doc = response.json()
                except ValueError:
                    doc = None
                if isinstance(doc, dict) and doc.get("status") == "error":
                    raise Rejected(f"{doc.get('errorType')}: {doc.get('error')}")
                raise Unanswered(f"HTTP {response.status_code}")
            return response

    return _Session


class PromQL:
    """prometheus-api-client connections by Prometheus URL (see the module doc). Thread-safe."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.pool_size = pool_size
        self._connections: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _connection(self, url: str) -> Any:
        base = url.rstrip("/")
        with self._lock:
            prom = self._connections.get(base)
            if prom is not None:
                return prom
            from prometheus_api_client.prometheus_connect import PrometheusConnect
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            no_retry = Retry(total=0, redirect=0, raise_on_status=False)
            session = _session_class()()
            prom = PrometheusConnect(url=base, disable_ssl=True, retry=no_retry,
                                     session=session, method="POST")
            adapter = HTTPAdapter(max_retries=no_retry, pool_connections=1,
                                  pool_maxsize=self.pool_size)
            session.mount(base, adapter)  # ours, with its pool size, over the library's
            self._connections[base] = prom
            return prom

    def _ask(self, url: str, send: Any) -> Any:
        import requests

        try:
            return send(self._connection(url))
        except PromQLError:
            raise
        except (requests.RequestException, OSError) as exc:  # refused, timeout, DNS
            root = _root_cause(exc)
            raise Unanswered(f"{type(root).__name__}: {root}") from None
        except (ValueError, KeyError, TypeError) as exc:  # not Prometheus's JSON
            raise Unanswered(f"not a Prometheus answer: {exc}") from None

    def instant(self, url: str, query: str, timeout: float) -> tuple[str, Any]:
        """POST /api/v1/query: (resultType, result); raises Rejected or Unanswered."""
        result = self._ask(url, lambda prom: prom.custom_query(query, timeout=timeout))
        return result_type(result), result

    def range(self, url: str, query: str, start: float | dt.datetime,
              end: float | dt.datetime, step: float, timeout: float) -> list[dict[str, Any]]:
        """POST /api/v1/query_range: every series (each with `metric` and `values`);
        raises Rejected or Unanswered. Times are Unix seconds or datetimes."""
        result = self._ask(url, lambda prom: prom.custom_query_range(
            query, start_time=_when(start), end_time=_when(end),
            step=f"{max(step, 0.001):g}", timeout=timeout))
        if not isinstance(result, list):
            raise Unanswered(f"unexpected answer {str(result)[:200]}")
        return result

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, {}
        for prom in connections.values():
            prom.close()
