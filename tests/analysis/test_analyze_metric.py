"""The `analyze` metric source: a number at `field`, pass/fail on `max`, here or `from:` a host,
cached by content; as a precondition, a `check:` step and a trigger of a phase."""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.analysis.cache import shared_cache
from orchestrator.config.inventory import Host
from orchestrator.core.model import Metric, MetricKind
from orchestrator.metrics.sources.base import ReadContext, Reading, read_metric
from orchestrator.runners.local import LocalCommandRunner
from tests.support.agent_sources import AGENT, SEED, write
from tests.support.projects import make_project

CLEAN = textwrap.dedent('''\
    from common.core.base_agent import BaseAgent


    class SpeechAgent(BaseAgent):
        def __init__(self):
            super().__init__(name="SpeechAgent")

        def _get_health_status(self):
            return {"status": "ok"}
    ''')
LOCAL = Host("main", {"ansible_connection": "local"})
# a host reached through the command runner, as over SSH (here the runner runs it locally)
REMOTE = Host("pc2", {"ansible_host": "127.0.0.1"})


def metric(**config: Any) -> Metric:
    kind = MetricKind.NUMBER if "field" in config else MetricKind.PASSFAIL
    return Metric(name="m", source="analyze", kind=kind, config=config, nodata="skip",
                  nodata_alert=120.0, timeout=None, line=1)


def read(**config: Any) -> Reading:
    ctx = ReadContext(host=LOCAL, hostvars={"main": {"agent": "x"}}, phase=1, run_id="r",
                      elapsed=0.0, timeout=10.0, commands=LocalCommandRunner(),
                      hosts={"main": LOCAL, "pc2": REMOTE})
    return read_metric(metric(**config), ctx)


def test_field_and_max_on_a_file(tmp_path: Path) -> None:
    agent = write(tmp_path, "speech_agent.py", AGENT)
    assert read(path=str(agent), field="threads.count") == Reading(4.0)
    assert read(path=str(agent), field="sockets.raw") == Reading(1.0)
    assert read(path=str(agent), field="sockets.by_type.SUB") == Reading(1.0)
    assert read(path=str(agent), field="sockets.by_type.DEALER") == Reading(0.0)  # none
    assert read(path=str(agent), field="syntax_errors") == Reading(0.0)  # a list: its length
    failing = read(path=str(agent), max={"threads.count": 0, "sockets.raw": 0})
    assert failing == Reading(0.0, "threads.count is 4, at most 0 allowed; "
                                   "sockets.raw is 1, at most 0 allowed")
    assert read(path=str(agent), max={"threads.count": 4}) == Reading(1.0)
    agent.write_text(CLEAN)
    assert read(path=str(agent), max={"threads.count": 0, "sockets.count": 0}) == Reading(1.0)


def test_field_and_max_on_a_directory_read_its_totals(tmp_path: Path) -> None:
    write(tmp_path, "a/speech_agent.py", AGENT)
    write(tmp_path, "b/other_agent.py", AGENT.replace("SpeechAgent", "OtherAgent"))
    write(tmp_path, "_trash_1/old_agent.py", AGENT.replace("SpeechAgent", "OldAgent"))
    assert read(path=str(tmp_path), field="threads.count") == Reading(8.0)
    assert read(path=str(tmp_path), field="files") == Reading(2.0)
    assert read(path=str(tmp_path), field="threads.count", exclude=["b"]) == Reading(4.0)
    assert read(path=str(tmp_path), max={"sockets.zmq": 8}) == Reading(1.0)
    assert read(path=str(tmp_path), field="risk.score").value == \
        read(path=str(tmp_path / "a" / "speech_agent.py"), field="risk.score").value
    code_lines = read(path=str(tmp_path), field="code_lines")
    assert code_lines.value is None and "directory" in str(code_lines.error)


def test_no_data_for_a_missing_file_a_binary_file_or_an_unknown_host(tmp_path: Path) -> None:
    missing = read(path=str(tmp_path / "gone.py"), max={"threads.count": 0})
    assert missing.value is None and "No such file" in str(missing.error)
    blob = tmp_path / "blob.py"
    blob.write_bytes(b"\x00\x01")
    assert read(path=str(blob), field="threads.count") == \
        Reading(None, f"analyze {blob}: not text: holds NUL bytes")
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = read(path=str(empty), field="threads.count")
    assert nothing.value is None and "no .py file" in str(nothing.error)
    unknown = read(path=str(blob), field="threads.count", **{"from": "nosuch"})
    assert unknown == Reading(None, "from: unknown host 'nosuch'")


def test_from_a_host_through_the_command_runner(tmp_path: Path) -> None:
    agent = write(tmp_path, "agents/speech_agent.py", AGENT)
    there = {"from": "pc2"}
    assert read(path=str(agent), field="threads.count", **there) == Reading(4.0)
    assert read(path=str(tmp_path / "agents"), field="threads.count", **there) == Reading(4.0)
    assert read(path=str(agent), max={"threads.count": 0}, **there).value == 0.0
    missing = read(path=str(tmp_path / "gone.py"), field="threads.count", **there)
    assert missing.value is None and "on pc2: no such file or directory" in str(missing.error)
    # unchanged content on the host: listed again, never fetched or analysed again
    cache = shared_cache()
    before = cache.analysed
    assert read(path=str(agent), field="threads.count", **there) == Reading(4.0)
    assert cache.analysed == before
    agent.write_text(CLEAN + "# content never seen before\n")
    assert read(path=str(agent), field="threads.count", **there) == Reading(0.0)
    assert cache.analysed == before + 1


def test_an_unreachable_host_is_no_data(tmp_path: Path) -> None:
    ctx = ReadContext(host=LOCAL, hostvars={}, phase=1, run_id="r", elapsed=0.0, timeout=2.0,
                      commands=_Unreachable(), hosts={"pc2": REMOTE})
    got = read_metric(metric(path="/srv/agent.py", max={"threads.count": 0}, **{"from": "pc2"}),
                      ctx)
    assert got.value is None and "unreachable" in str(got.error)


class _Unreachable:
    def run_command(self, request: Any, cancel: Any) -> Any:
        from orchestrator.runners.base import FailureKind, Result

        return Result.failed(request.host.name, FailureKind.UNREACHABLE,
                             f"{request.host.name} unreachable: connection refused")


def test_an_unchanged_file_costs_nothing_per_read() -> None:
    read(path=str(SEED), field="threads.count")  # analysed once
    cache = shared_cache()
    before = cache.analysed
    took = []
    for _ in range(20):
        t0 = time.perf_counter()
        assert read(path=str(SEED), max={"threads.count": 0}) == \
            Reading(0.0, "threads.count is 7, at most 0 allowed")
        took.append(time.perf_counter() - t0)
    assert cache.analysed == before
    assert sorted(took)[len(took) // 2] < 0.005  # the median read: well under 5 ms


def test_a_copy_with_the_same_bytes_is_not_analysed_again(tmp_path: Path) -> None:
    one = write(tmp_path, "one.py", AGENT + "\n# unique to this test\n")
    read(path=str(one), field="threads.count")
    before = shared_cache().analysed
    two = tmp_path / "two.py"
    shutil.copyfile(one, two)
    assert read(path=str(two), field="threads.count") == Reading(4.0)
    assert shared_cache().analysed == before


MIGRATION = """\
name: analyze-gates
inventory: inventory/hosts.yml
poll_interval: 300ms
metrics:
  agent_clean:
    source: analyze
    path: {agent}
    max: {{threads.count: 0, sockets.count: 0}}
  agent_threads:
    source: analyze
    path: {agent}
    field: threads.count
  typo:
    source: analyze
    path: {agent}
    field: thread.count
triggers:
  threads_back: {{metric: agent_threads, increase: 0}}
"""


def test_a_field_the_document_cannot_have_is_a_validate_error(tmp_path: Path) -> None:
    proj = make_project(tmp_path, migration=MIGRATION.format(agent=tmp_path / "a.py"))
    proj.phase(1, "one", "phase: 1\nsteps:\n  - id: one\n    command: 'true'\n    rollback: none\n")
    res = proj.migrate("validate")
    assert res.returncode == 2
    assert ("migration.yaml:16: metric 'typo': field 'thread.count' is not a number of the "
            "analysis document; did you mean 'threads.count'?") in res.stderr


@pytest.fixture()
def gated(tmp_path: Path) -> tuple[Any, Path]:
    agent = tmp_path / "deployed" / "speech_agent.py"
    write(agent.parent, agent.name, AGENT)
    migration = MIGRATION.format(agent=agent).replace(
        f"  typo:\n    source: analyze\n    path: {agent}\n    field: thread.count\n", "")
    proj = make_project(tmp_path, migration=migration, hosts=("main",))
    proj.phase(1, "gate", f"""\
        phase: 1
        triggers: []
        preconditions: [agent_clean]
        steps:
          - id: one
            command: 'touch {proj.markers}/main-one'
            rollback_command: 'rm -f {proj.markers}/main-one'
          - id: still-clean
            check: agent_clean
            timeout: 2s
        """)
    return proj, agent


def test_precondition_refuses_exit_4_until_the_code_is_fixed(gated: tuple[Any, Path]) -> None:
    proj, agent = gated
    refused = proj.migrate("phase", "1", "--host", "main")
    assert refused.returncode == 4, refused.stderr
    assert "preconditions failing" in refused.stderr
    assert "agent_clean on main (threads.count is 4, at most 0 allowed; sockets.count is 5" \
        in refused.stderr
    assert not (proj.markers / "main-one").exists()
    agent.unlink()  # missing: no data, and the precondition says why
    gone = proj.migrate("phase", "1", "--host", "main")
    assert gone.returncode == 4 and "No such file or directory" in gone.stderr
    agent.write_text(CLEAN)
    ran = proj.migrate("phase", "1", "--host", "main")
    assert ran.returncode == 0, ran.stderr
    assert (proj.markers / "main-one").exists()


def test_a_trigger_rolls_back_when_a_thread_comes_back(gated: tuple[Any, Path],
                                                       tmp_path: Path) -> None:
    proj, agent = gated
    agent.write_text(CLEAN)
    bad = write(tmp_path, "bad/speech_agent.py",
                CLEAN + "\nimport threading\nthreading.Thread(target=print).start()\n")
    proj.phase(2, "deploy", f"""\
        phase: 2
        requires: [1]
        triggers: [threads_back]
        steps:
          - id: deploy
            command: 'cp {bad} {agent}'
            rollback_command: 'echo restored > {proj.markers}/restored'
          - id: soak
            wait: 5s
        """)
    assert proj.migrate("phase", "1", "--host", "main").returncode == 0
    res = proj.migrate("--output", "json", "phase", "2", "--host", "main")
    assert res.returncode == 1, res.stderr
    assert "threads_back" in json.loads(res.stdout)["reason"]
    assert (proj.markers / "restored").exists()
