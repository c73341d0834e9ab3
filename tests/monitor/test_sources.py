"""Sources that describe themselves, and a poll cycle that reads a fleet cheaply.

- The registry: every source declares its keys, their types and its kind, and
  `migrate validate` reports a wrong key or type at its FILE:LINE.
- `prometheus`: one query per metric per poll cycle for all the hosts (a real
  Prometheus counts the queries it answered), by regex matcher or `host_label`.
- `exporter` and `http`: a URL several hosts or metrics read is fetched once a cycle.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.config.inventory import Host
from orchestrator.config.project import load_project
from orchestrator.core.bus import RunBus
from orchestrator.core.clock import SystemClock
from orchestrator.core.model import MetricKind
from orchestrator.metrics.sources import SOURCES
from orchestrator.metrics.sources.base import ReadContext, read_metric
from orchestrator.metrics.sources.prometheus import PrometheusSource, regex_batch
from orchestrator.monitor.trigger_monitor import TriggerMonitor
from orchestrator.state.journal import Journal
from tests.support.projects import Proj, make_project

GOOD_PHASE = "phase: 1\nsteps:\n  - id: soak\n    wait: 1s\n"


# --- a fleet's metrics on one HTTP server ----------------------------------------------------
class Fleet:
    """Every host's series on one /metrics (as one exporter, or Prometheus' target, would
    serve them) and a /health/<host> JSON per host; counts requests per path."""

    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts
        self.hits: Counter[str] = Counter()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                owner.hits[self.path] += 1
                if self.path.startswith("/health/"):
                    name = self.path.rsplit("/", 1)[1]
                    body = json.dumps({"status": "ok", "load": owner.load(name)}).encode()
                else:
                    body = owner.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # listen() backlog: 16 readers connect at once
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def index(name: str) -> int:
        return int(re.sub(r"\D", "", name) or 0)

    def vram(self, name: str, gpu: int) -> float:
        return 1000.0 + 10 * self.index(name) + gpu

    def load(self, name: str) -> float:
        return float(self.index(name)) / 2

    def exposition(self) -> str:
        lines = []
        for name in self.hosts:
            node = f"10.0.0.{self.index(name)}:9400"
            for gpu in (0, 1):
                lines.append(f'DCGM_FI_DEV_FB_USED{{Hostname="{name}",gpu="{gpu}",'
                             f'node="{node}"}} {self.vram(name, gpu)}')
            lines.append(f'DCGM_FI_DEV_GPU_TEMP{{gpu="0",node="{node}"}} '
                         f'{40 + self.index(name)}')
        return "\n".join(lines) + "\n"


@contextmanager
def serving(fleet: Fleet) -> Iterator[Fleet]:
    thread = threading.Thread(target=fleet.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fleet
    finally:
        fleet.server.shutdown()
        fleet.server.server_close()


def fleet_project(tmp: Path, hosts: list[str], metrics: str, triggers: str,
                  extra: str = "") -> Proj:
    proj = make_project(tmp, migration=(
        "name: fleet\ninventory: inventory/hosts.yml\npoll_interval: 1s\n" + extra
        + "metrics:\n" + metrics + "triggers:\n" + triggers))
    lines = "".join(f"    {h}:\n      ansible_host: 10.0.0.{Fleet.index(h)}\n" for h in hosts)
    proj.write("inventory/hosts.yml", "all:\n  vars:\n    ansible_connection: local\n"
               f"  hosts:\n{lines}")
    proj.phase(1, "soak", GOOD_PHASE)
    return proj


def monitor_for(proj: Proj, journal: Journal) -> tuple[TriggerMonitor, list[Host]]:
    project, inventory = load_project(proj.root)
    monitor = TriggerMonitor(project, inventory, journal, SystemClock(), None)
    hosts = list(inventory.hosts.values())
    monitor.prepare(RunBus("run-1"), project.phases[1], hosts, False)
    return monitor, hosts


def last_values(journal: Journal, trigger: str) -> dict[str, float | None]:
    return {row["host"]: row["value"] for row in journal.samples("run-1")
            if row["trigger"] == trigger}


# --- the registry and validation -------------------------------------------------------------
def test_every_source_declares_its_keys_kind_and_reader() -> None:
    assert sorted(SOURCES) == ["analyze", "command", "exporter", "http", "nvml", "prometheus",
                               "scripted", "tcp"]
    for name, spec in SOURCES.items():
        assert spec.name == name and spec.summary
        assert callable(spec.reader.read)
        assert any(k.required for k in spec.keys.values()), name
        assert all(k.doc for k in spec.keys.values()), name


@pytest.mark.parametrize(("source", "body", "kind"), [
    ("http", {"url": "u", "expect": {"status": "ok"}}, MetricKind.PASSFAIL),
    ("http", {"url": "u", "field": "a.b"}, MetricKind.NUMBER),
    ("command", {"command": "true"}, MetricKind.PASSFAIL),
    ("command", {"command": "echo 1", "parse": "number"}, MetricKind.NUMBER),
    ("tcp", {"address": "a:1"}, MetricKind.PASSFAIL),
    ("scripted", {"values": [{"at": "0s", "value": "pass"}]}, MetricKind.PASSFAIL),
    ("scripted", {"values": [{"at": "0s", "value": 3}]}, MetricKind.NUMBER),
    ("prometheus", {"query": "up"}, MetricKind.NUMBER),
    ("exporter", {"url": "u", "series": "x"}, MetricKind.NUMBER),
    ("nvml", {"field": "xid_errors"}, MetricKind.NUMBER),
])
def test_a_sources_kind_may_depend_on_its_keys(source: str, body: dict[str, Any],
                                              kind: MetricKind) -> None:
    assert SOURCES[source].kind(body) is kind


BAD_METRICS = """\
name: bad
inventory: inventory/hosts.yml
metrics:
  a: {source: http, url: 'http://x', expct: {status: ok}}
  b:
    source: nvml
    field: memory_used_mib
    gpu: first
  c:
    source: http
    url: 5
  d:
    source: http
    url: http://x
    expect: ok
  e:
    source: prometheus
    query: up
    host_label: not a label
  f:
    source: exporter
    url: http://x/metrics
    series: 'X{gpu=0}'
  g: {source: command, command: 'true', parse: text}
  h: {source: tcp}
  i: {source: http, url: 'http://x', expect: {a: 1}, field: b}
  j:
    source: scripted
    values:
      - {at: 0s, value: 1}
      - {at: soon, value: 2}
  k: {source: nvml, field: vram}
  l: {source: nvml, field: process_memory_mib}
"""


def test_unknown_keys_and_wrong_types_are_reported_at_their_lines(tmp_path: Path) -> None:
    proj = make_project(tmp_path, migration=BAD_METRICS)
    proj.phase(1, "good", GOOD_PHASE)
    with pytest.raises(ConfigError) as info:
        load_project(proj.root)
    problems = [str(p) for p in info.value.problems]
    expected = [
        "migration.yaml:4: unknown key 'expct' in metric 'a' (did you mean 'expect'?)",
        "migration.yaml:8: metric 'b': gpu must be an index (0, 1, ...), not 'first'",
        "migration.yaml:11: metric 'c': url must be a non-empty string, not 5",
        "migration.yaml:15: metric 'd': expect must be a mapping, not 'ok'",
        "migration.yaml:19: metric 'e': host_label must be a label name",
        "migration.yaml:23: metric 'f': series 'X{gpu=0}': cannot read labels",
        "migration.yaml:24: metric 'g': parse must be one of number, not 'text'",
        "migration.yaml:25: metric 'h': source tcp needs 'address'",
        "migration.yaml:26: metric 'i': give only one of expect, field",
        "migration.yaml:31: metric 'j': at: malformed duration 'soon'",
        "migration.yaml:32: metric 'k': field must be one of memory_used_mib,",
        "migration.yaml:33: metric 'l': process_memory_mib needs pid_file",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert len(problems) == len(expected), problems


def test_the_projects_own_migration_still_validates() -> None:
    project, _ = load_project(Path(__file__).resolve().parents[2])
    assert project.metrics["agent_health"].kind is MetricKind.PASSFAIL


# --- prometheus: how one query serves many hosts ---------------------------------------------
def batch(*queries: str) -> Any:
    return regex_batch("u", [(Host(f"h{i}", {}), q) for i, q in enumerate(queries)])


def test_a_host_matcher_becomes_a_regex_and_aggregations_group_by_its_label() -> None:
    b = batch('sum(X{Hostname="a.b"})', 'sum(X{Hostname="c|d"})', 'sum(X{Hostname="a.b"})')
    assert b.query == 'sum by (Hostname) (X{Hostname=~"a\\\\.b|c\\\\|d"})'
    assert b.hosts == {("a.b",): ["h0", "h2"], ("c|d",): ["h1"]}
    b = batch('max(rate(X{node="10.0.0.1:9400"}[5m])) by (gpu)',
              'max(rate(X{node="10.0.0.2:9400"}[5m])) by (gpu)')
    assert b.query == 'max(rate(X{node=~"10\\\\.0\\\\.0\\\\.1:9400|10\\\\.0\\\\.0\\\\.2:9400"}' \
                      '[5m])) by (gpu, node)'
    b = batch('sum(a{h="x"}) / on() sum(b{h="x"})', 'sum(a{h="y"}) / on() sum(b{h="y"})')
    assert b.query == 'sum by (h) (a{h=~"x|y"}) / on(h) sum by (h) (b{h=~"x|y"})'
    b = batch('histogram_quantile(0.9, sum by (le) (rate(x{h="x"}[5m])))',
              'histogram_quantile(0.9, sum by (le) (rate(x{h="y"}[5m])))')
    assert b.query == 'histogram_quantile(0.9, sum by (le, h) (rate(x{h=~"x|y"}[5m])))'


@pytest.mark.parametrize("queries", [
    ('sum(a{h="x"}) or vector(0)', 'sum(a{h="y"}) or vector(0)'),  # vector() has no labels
    ('sum without (h) (X{h="x"})', 'sum without (h) (X{h="y"})'),  # drops the host label
    ('X{h!="x"}', 'X{h!="y"}'),  # not an equality matcher
    ('X{h="x"} > 1', 'X{h="y"} > 2'),  # differs outside a matcher
    ('absent(up{h="x"})', 'absent(up{h="y"})'),
])
def test_queries_that_grouping_would_change_are_read_one_host_at_a_time(
        queries: tuple[str, ...]) -> None:
    assert batch(*queries) is None


# --- exporter and http: one fetch per URL per cycle ------------------------------------------
def test_an_exporter_url_and_an_http_url_are_fetched_once_per_cycle(tmp_path: Path) -> None:
    hosts = [f"gpu{i}" for i in range(12)]
    with serving(Fleet(hosts)) as fleet:
        metrics = (
            f"  vram:\n    source: exporter\n    url: '{fleet.url}/metrics'\n"
            "    series: 'DCGM_FI_DEV_FB_USED{Hostname=\"{{ host }}\"}'\n"
            f"  vram0:\n    source: exporter\n    url: '{fleet.url}/metrics'\n"
            "    series: 'DCGM_FI_DEV_FB_USED{Hostname=\"{{ host }}\", gpu=\"0\"}'\n"
            f"  health:\n    source: http\n    url: '{fleet.url}/health/{{{{ host }}}}'\n"
            "    expect: {status: ok}\n"
            f"  load:\n    source: http\n    url: '{fleet.url}/health/{{{{ host }}}}'\n"
            "    field: load\n")
        triggers = ("  t_vram: {metric: vram, above: 100000}\n"
                    "  t_vram0: {metric: vram0, above: 100000}\n"
                    "  t_health: {metric: health, failing: true}\n"
                    "  t_load: {metric: load, above: 100}\n")
        proj = fleet_project(tmp_path, hosts, metrics, triggers)
        journal = Journal(tmp_path / "state.db")
        monitor, _ = monitor_for(proj, journal)
        for _ in range(2):
            monitor.cycle()
        assert fleet.hits["/metrics"] == 2  # 12 hosts x 2 metrics, once per cycle
        assert all(fleet.hits[f"/health/{h}"] == 2 for h in hosts), fleet.hits
        vram = last_values(journal, "t_vram")
        assert vram == {h: fleet.vram(h, 0) + fleet.vram(h, 1) for h in hosts}
        assert last_values(journal, "t_vram0") == {h: fleet.vram(h, 0) for h in hosts}
        assert last_values(journal, "t_load") == {h: fleet.load(h) for h in hosts}
        assert set(last_values(journal, "t_health").values()) == {1.0}
        journal.close()


# --- prometheus through a real server --------------------------------------------------------
def answered_queries(url: str) -> float:
    """How many /api/v1/query requests Prometheus has answered (from its own /metrics,
    which is not itself a query)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_http_requests_total{")
               and 'handler="/api/v1/query"' in line)


@pytest.mark.integration
def test_a_batched_read_gives_each_host_its_one_series_or_says_why_not(tmp_path: Path) -> None:
    """One query for every host (`host_label`): a host with one series reads its value, a
    host with two is no data naming how many and the label to aggregate by, a host
    Prometheus has no series for is no data saying so; none of them spoils another."""
    from orchestrator.core.model import Metric
    from tests.support.prom import prometheus

    served = ["gpu1", "gpu2", "gpu3"]
    hosts = [Host(h, {"ansible_host": f"10.0.0.{Fleet.index(h)}"}) for h in served + ["gpu9"]]
    with serving(Fleet(served)) as fleet, prometheus(
            tmp_path, fleet.url.removeprefix("http://"), "DCGM_FI_DEV_FB_USED") as url:
        source = PrometheusSource()
        ctx = ReadContext(host=hosts[0], hostvars={h.name: h.vars for h in hosts}, phase=1,
                          run_id="r", elapsed=0, timeout=5, prometheus_url=url)

        def read(query: str) -> dict[str, Any]:
            metric = Metric("vram", "prometheus", MetricKind.NUMBER,
                            {"query": query, "host_label": "Hostname"}, "skip", 120, None, 1)
            return source.read_many(metric, hosts, ctx)

        one = read('DCGM_FI_DEV_FB_USED{gpu="1"}')
        assert {h: r.value for h, r in one.items()} == \
            {"gpu1": fleet.vram("gpu1", 1), "gpu2": fleet.vram("gpu2", 1),
             "gpu3": fleet.vram("gpu3", 1), "gpu9": None}
        assert one["gpu9"].error == ("query 'DCGM_FI_DEV_FB_USED{gpu=\"1\"}' returned no "
                                     "series for gpu9 (batched by Hostname)")
        two = read("DCGM_FI_DEV_FB_USED")
        assert {h: r.value for h, r in two.items()} == dict.fromkeys(served + ["gpu9"])
        assert two["gpu2"].error == ("query 'DCGM_FI_DEV_FB_USED' returned 2 series for "
                                     "gpu2; aggregate it by (Hostname)")
        assert "returned no series for gpu9" in (two["gpu9"].error or "")
        assert source.queries == 2  # one query a read, four hosts each


@pytest.mark.integration
def test_prometheus_reads_every_host_with_one_query_per_metric_per_cycle(
        tmp_path: Path) -> None:
    from tests.support.prom import prometheus

    hosts = [f"gpu{i}" for i in range(1, 13)]
    with serving(Fleet(hosts)) as fleet, prometheus(
            tmp_path, fleet.url.removeprefix("http://"), "DCGM_FI_DEV_GPU_TEMP") as url:
        metrics = (
            "  vram:\n    source: prometheus\n"
            "    query: 'sum(DCGM_FI_DEV_FB_USED{Hostname=\"{{ host }}\"})'\n"
            "  vram_by_node:\n    source: prometheus\n"
            "    query: 'max(DCGM_FI_DEV_FB_USED{node=\"{{ vars.ansible_host }}:9400\"})'\n"
            "  temp:\n    source: prometheus\n"
            "    query: 'DCGM_FI_DEV_GPU_TEMP{gpu=\"0\"}'\n    host_label: node\n")
        triggers = ("  t_vram: {metric: vram, above: 100000}\n"
                    "  t_node: {metric: vram_by_node, above: 100000}\n"
                    "  t_temp: {metric: temp, above: 1000}\n")
        proj = fleet_project(tmp_path, hosts, metrics, triggers,
                             extra=f"prometheus: {{url: '{url}'}}\n")
        journal = Journal(tmp_path / "state.db")
        monitor, inv_hosts = monitor_for(proj, journal)
        source = SOURCES["prometheus"].reader
        assert isinstance(source, PrometheusSource)
        before, sent = answered_queries(url), source.queries
        for _ in range(3):
            monitor.cycle()
        assert answered_queries(url) - before == 3 * 3  # 3 metrics x 3 cycles, 12 hosts
        assert source.queries - sent == 9
        assert last_values(journal, "t_vram") == \
            {h: fleet.vram(h, 0) + fleet.vram(h, 1) for h in hosts}
        assert last_values(journal, "t_node") == {h: fleet.vram(h, 1) for h in hosts}
        assert last_values(journal, "t_temp") == {h: 40.0 + fleet.index(h) for h in hosts}
        # the single-host path is unchanged, and host_label works there too
        ctx = ReadContext(host=inv_hosts[2], hostvars=monitor.reader.hostvars, phase=1,
                          run_id="r", elapsed=0, timeout=2, prometheus_url=url)
        project = monitor.project
        assert read_metric(project.metrics["vram"], ctx).value == \
            fleet.vram("gpu3", 0) + fleet.vram("gpu3", 1)
        assert read_metric(project.metrics["temp"], ctx).value == 43.0
        journal.close()


@pytest.mark.integration
def test_a_batched_query_prometheus_rejects_is_read_per_host_and_a_bad_one_costs_two(
        tmp_path: Path) -> None:
    from tests.support.prom import prometheus

    hosts = [f"gpu{i}" for i in range(1, 11)]
    with serving(Fleet(hosts)) as fleet, prometheus(
            tmp_path, fleet.url.removeprefix("http://"), "DCGM_FI_DEV_GPU_TEMP") as url:
        metrics = ("  broken:\n    source: prometheus\n"
                   "    query: 'sum(rate(DCGM_FI_DEV_FB_USED{Hostname=\"{{ host }}\"}))'\n")
        proj = fleet_project(tmp_path, hosts, metrics, "  t: {metric: broken, above: 1}\n",
                             extra=f"prometheus: {{url: '{url}'}}\n")
        journal = Journal(tmp_path / "state.db")
        monitor, _ = monitor_for(proj, journal)
        before = answered_queries(url)
        monitor.cycle()
        assert answered_queries(url) - before == 2  # the batch, then one host's to tell
        assert all(v is None for v in last_values(journal, "t").values())
        assert monitor.source_errors["broken"] == len(hosts)
        journal.close()


def test_from_a_group_probes_from_the_member_being_read() -> None:
    """A fleet's agent instances form the group `main`: `from: main` on an instance probes
    from that instance's own machine, not from a host named main."""
    hosts = {n: Host(n, {"ansible_connection": "local"}) for n in ("mma@gpu1", "mma@gpu2", "pc2")}
    groups = {"main": ["mma@gpu1", "mma@gpu2"], "all": list(hosts)}

    def ctx(reading: str) -> ReadContext:
        return ReadContext(host=hosts[reading], hostvars={}, phase=None, run_id=None,
                           elapsed=0.0, timeout=1.0, hosts=hosts, groups=groups)

    assert ctx("mma@gpu2").origin("main") is hosts["mma@gpu2"]
    assert ctx("mma@gpu1").origin("main") is hosts["mma@gpu1"]
    assert ctx("pc2").origin("main") is hosts["mma@gpu1"]  # not a member: the first one
    assert ctx("pc2").origin("pc2") is hosts["pc2"]  # a host name stays that host
    assert ctx("pc2").origin("pc3") is None


def test_a_command_that_does_not_finish_is_no_data_and_one_that_exits_non_zero_fails(
        ) -> None:
    """As SPEC section 2 says of every source: a read that errors is no data (which a
    pass/fail trigger then counts as failing, with "no data: timed out" as the reason the
    operator reads), while the command's own non-zero exit is the check failing."""
    from orchestrator.core.model import Metric
    from orchestrator.runners.base import FailureKind, Result
    from orchestrator.runners.fake import FakeCommandRunner
    from orchestrator.runners.local import LocalCommandRunner

    def read(command: str, runner: object, timeout: float = 0.3) -> tuple[float | None, str]:
        m = Metric(name="m", source="command", kind=MetricKind.PASSFAIL,
                   config={"command": command}, nodata="skip", nodata_alert=120.0,
                   timeout=None, line=1)
        ctx = ReadContext(host=Host("h1", {}), hostvars={"h1": {}}, phase=1, run_id="r",
                          elapsed=0.0, timeout=timeout, commands=runner)  # type: ignore[arg-type]
        r = read_metric(m, ctx)
        return r.value, r.error or ""

    local = LocalCommandRunner()
    assert read("true", local) == (1.0, "")
    value, error = read("exit 3", local)
    assert value == 0.0 and "3" in error
    value, error = read("sleep 5", local)
    assert value is None and "timed out" in error
    lost = FakeCommandRunner(lambda req, _: Result.failed(req.host.name, FailureKind.UNREACHABLE,
                                                          "host unreachable"))
    assert read("true", lost) == (None, "host unreachable")
