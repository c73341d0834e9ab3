"""Pull: read the firing alerts every poll interval, so a missed push is never a missed
rollback (migrate restarted, Alertmanager's webhook retries gave up, a network blip).

- With `alertmanager: {url}`: `GET /api/v2/alerts?active=true&silenced=false&inhibited=false`,
  the same alerts Alertmanager would notify about (silences and inhibitions respected).
- Without Alertmanager: Prometheus's own `ALERTS{alertname="X",alertstate="firing"}`
  through the project's Prometheus URL, one instant query per alert name, for all
  hosts at once, through the one Prometheus client (`metrics.promql`). `ALERTS` has
  no start time, so the book records "since" as first seen.

Each puller returns the full list for its source or raises `PullError`; `AlertPuller`
writes the answer into the book (or records the error, keeping the last view).
A timeout per request and no retries: the next poll is the retry. Alertmanager is read
through the puller's pooled client (`core.http`: one keep-alive connection reused from
one poll to the next).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

from orchestrator.core.http import HttpClient, HttpUnavailable
from orchestrator.metrics.alerts.book import (
    ALERTMANAGER,
    PROMETHEUS,
    AlertBook,
    FiringAlert,
)
from orchestrator.metrics.alerts.receiver import WebhookError, parse_time
from orchestrator.metrics.promql import PromQL, PromQLError

AM_ALERTS = "/api/v2/alerts"
AM_QUERY = {"active": "true", "silenced": "false", "inhibited": "false"}
#: Alertmanager states that mean "would be notified": unprocessed = just received.
AM_FIRING_STATES = {"active", "unprocessed"}


class PullError(Exception):
    """A pull that gave no answer (refused, timeout, non-2xx, not the expected JSON)."""


def _labels(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise PullError(f"{where}: labels are not an object")
    return {str(k): str(v) for k, v in raw.items()}


def _get_alertmanager_json(client: HttpClient, url: str, timeout: float) -> Any:
    try:
        answer = client.get(url, timeout, headers={"Accept": "application/json"})
    except HttpUnavailable as exc:  # refused, timeout, DNS, bad URL, too big
        raise PullError(str(exc)) from exc
    if not answer.ok:
        detail = answer.body[:300].decode("utf-8", "replace").strip()
        raise PullError(f"GET {url}: HTTP {answer.status} {detail}".strip())
    try:
        return answer.json()
    except ValueError as exc:
        raise PullError(f"GET {url}: not JSON: {exc}") from exc


def fetch_alertmanager(base_url: str, timeout: float,
                       client: HttpClient | None = None) -> list[FiringAlert]:
    """Active, unsilenced, uninhibited alerts from Alertmanager's API v2."""
    url = base_url.rstrip("/") + AM_ALERTS + "?" + urllib.parse.urlencode(AM_QUERY)
    if client is None:
        with HttpClient(per_host=1) as own:
            doc = _get_alertmanager_json(own, url, timeout)
    else:
        doc = _get_alertmanager_json(client, url, timeout)
    if not isinstance(doc, list):
        raise PullError(f"GET {url}: expected a list of alerts")
    out = []
    for item in doc:
        if not isinstance(item, dict):
            raise PullError(f"GET {url}: an alert is not an object")
        state = (item.get("status") or {}).get("state", "active")
        if state not in AM_FIRING_STATES:
            continue
        labels = _labels(item.get("labels"), url)
        if not labels.get("alertname"):
            continue
        try:
            since = parse_time(item.get("startsAt"), "startsAt")
        except WebhookError:
            since = None
        annotations = item.get("annotations")
        out.append(FiringAlert(labels["alertname"], labels, since, ALERTMANAGER,
                               _labels(annotations, url) if annotations else {},
                               str(item.get("generatorURL") or "")))
    return out


def alerts_query(name: str) -> str:
    """PromQL for one alert name's firing series (quotes and backslashes escaped)."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'ALERTS{{alertname="{escaped}",alertstate="firing"}}'


def fetch_prometheus(base_url: str, names: Iterable[str], timeout: float,
                     client: PromQL | None = None) -> list[FiringAlert]:
    """Firing alerts of these names from Prometheus's `ALERTS` series: one query each,
    through the one Prometheus client (`metrics.promql`)."""
    client = client or PromQL()
    deadline = time.monotonic() + timeout
    out = []
    for name in sorted(set(names)):
        query = alerts_query(name)
        left = max(0.1, deadline - time.monotonic())
        try:
            kind, result = client.instant(base_url, query, left)
        except PromQLError as exc:
            raise PullError(f"query {query}: {exc}") from None
        if kind != "vector":
            raise PullError(f"query {query}: gave a {kind}, not an instant vector")
        for series in result:
            labels = _labels((series or {}).get("metric"), query)
            labels.pop("__name__", None)
            labels.pop("alertstate", None)
            out.append(FiringAlert(name, labels, None, PROMETHEUS))
    return out


class AlertPuller:
    """One pull source feeding one book: Alertmanager when its URL is set, else Prometheus."""

    def __init__(self, book: AlertBook, names: Iterable[str], *,
                 alertmanager_url: str | None = None, prometheus_url: str | None = None,
                 timeout: float = 5.0, http: HttpClient | None = None) -> None:
        if not alertmanager_url and not prometheus_url:
            raise ValueError("AlertPuller needs an Alertmanager or a Prometheus URL")
        self.book = book
        self.names = frozenset(names)
        self.alertmanager_url = alertmanager_url
        self.prometheus_url = prometheus_url
        self.timeout = timeout
        self._promql = PromQL(pool_size=1)  # kept across polls: one connection reused
        #: Alertmanager's reads: one kept-alive connection, reused every poll
        self.http = http if http is not None else HttpClient(per_host=2, hosts=4)
        self.pulls = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def source(self) -> str:
        return ALERTMANAGER if self.alertmanager_url else PROMETHEUS

    def describe(self) -> str:
        if self.alertmanager_url:
            return f"Alertmanager {self.alertmanager_url}{AM_ALERTS}"
        return f"Prometheus {self.prometheus_url} ALERTS"

    def poll(self, timeout: float | None = None) -> str | None:
        """Pull once and write the book; the error text when the pull failed, else None."""
        limit = timeout or self.timeout
        started = time.monotonic()
        self.pulls += 1
        try:
            if self.alertmanager_url:
                alerts = fetch_alertmanager(self.alertmanager_url, limit, self.http)
            else:
                assert self.prometheus_url is not None
                alerts = fetch_prometheus(self.prometheus_url, self.names, limit, self._promql)
        except PullError as exc:
            self.failures += 1
            self.last_error = str(exc)[:300]
            self.book.pull_failed(self.source, self.last_error)
            return self.last_error
        if self.alertmanager_url:  # everything Alertmanager knows; keep ours for the names
            alerts = [a for a in alerts if a.name in self.names] if self.names else alerts
        self.last_error = None
        self.book.replace_view(self.source, alerts, requested_at=started,
                               scope=self.names or None)
        return None

    def close(self) -> None:
        """Close the kept-alive connections."""
        self.http.close()
        self._promql.close()
