"""`prometheus`: an instant PromQL query through prometheus-api-client.

The query must give one series (or aggregate to one); zero series is no data and
several is no data with a message saying to aggregate, never a silent pick.
"""

from __future__ import annotations

from orchestrator.config.templating import render
from orchestrator.core.model import Metric
from orchestrator.monitoring.sources.base import ReadContext, Reading, register


class PrometheusSource:
    def read(self, metric: Metric, ctx: ReadContext) -> Reading:
        ctx_vars = ctx.template_context()
        raw_url = metric.config.get("url") or ctx.prometheus_url
        if not raw_url:
            return Reading(None, "no prometheus url: set prometheus.url in migration.yaml, "
                                 "the metric's url, or $MIGRATE_PROMETHEUS_URL")
        url = render(str(raw_url), ctx_vars)
        query = render(str(metric.config["query"]), ctx_vars)
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        try:
            # no client-side retries: the next poll is the retry, and a read must end
            # within its timeout
            prom = PrometheusConnect(url=url, disable_ssl=True, timeout=ctx.timeout,
                                     retry=Retry(total=0))
            result = prom.custom_query(query=query)
        except Exception as exc:  # requests and prometheus_api_client errors: no data
            return Reading(None, f"prometheus {url}: {type(exc).__name__}: {exc}"[:300])
        if not result:
            return Reading(None, f"query {query!r} returned no series")
        if len(result) > 1:
            return Reading(None, f"query {query!r} returned {len(result)} series; "
                                 "aggregate it (sum, max) to one")
        try:
            return Reading(float(result[0]["value"][1]))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return Reading(None, f"query {query!r}: unexpected answer {result[0]!r} ({exc})")


register("prometheus", PrometheusSource())
