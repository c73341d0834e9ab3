"""Execution nodes without a network: `execution:` and `migrate_execution_node` checked
at FILE:LINE by `validate`, `plan` counting each node's hosts, the routing runner
splitting a request by node and merging the parts' results (fakes for the parts). The
shell the node runs is tested in test_node_commands.py."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from orchestrator._exceptions import ConfigError, RunnerError
from orchestrator.config.inventory import Host
from orchestrator.config.project import load_project
from orchestrator.core.clock import CancelToken
from orchestrator.runners.base import FailureKind, GroupResult, PlaybookRequest, Result
from orchestrator.runners.fake import FakePlaybookRunner
from orchestrator.runners.routing import RoutedPlaybookRunner, split_by_node
from tests.support.projects import Proj, make_project

PHASE = """\
phase: 1
steps:
  - id: a
    playbook: playbooks/touch.yml
    rollback: rollback/untouch.yml
"""

NODES = """\
name: nodes
inventory: inventory/hosts.yml
execution:
  nodes:
    north: {host: exec-north}
    south: {host: exec-south, runner: /opt/ar/bin/ansible-runner}
"""

INVENTORY = """\
all:
  vars:
    ansible_connection: local
  hosts:
    exec-north:
    exec-south:
  children:
    north:
      vars:
        migrate_execution_node: north
      hosts:
        gpu-n1:
        gpu-n2:
    south:
      vars:
        migrate_execution_node: south
      hosts:
        gpu-s1:
          migrate_execution_node: SOUTH_VALUE
        gpu-here:
          migrate_execution_node: ""
"""


def nodes_project(tmp_path: Path, migration: str = NODES, south: str = "south") -> Proj:
    proj = make_project(tmp_path, migration=migration)
    proj.write("inventory/hosts.yml", INVENTORY.replace("SOUTH_VALUE", south))
    proj.phase(1, "a", PHASE)
    return proj


def problems(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_project(root)
    return [str(p) for p in info.value.problems]


def test_nodes_load_with_their_runner(tmp_path: Path) -> None:
    project, inventory = load_project(nodes_project(tmp_path).root)
    north, south = project.execution_nodes["north"], project.execution_nodes["south"]
    assert (north.host, north.runner, north.runner_dir) == ("exec-north", "ansible-runner", None)
    assert (south.runner, south.runner_dir) == ("/opt/ar/bin/ansible-runner", "/opt/ar/bin")
    parts = split_by_node(list(inventory.hosts.values()))
    assert {k: [h.name for h in v] for k, v in parts.items()} == {
        "": ["exec-north", "exec-south", "gpu-here"], "north": ["gpu-n1", "gpu-n2"],
        "south": ["gpu-s1"]}


def test_validate_names_an_unknown_node_at_its_inventory_line(tmp_path: Path) -> None:
    proj = nodes_project(tmp_path, south="sooth")
    found = problems(proj.root)
    assert found == ["inventory/hosts.yml:19: host 'gpu-s1': migrate_execution_node 'sooth' "
                     "is no execution node (nodes: north, south) (did you mean 'south'?)"], found
    done = proj.migrate("validate")
    assert done.returncode == 2
    assert "inventory/hosts.yml:19:" in done.stderr and "'sooth'" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_names_a_node_that_is_no_inventory_host(tmp_path: Path) -> None:
    proj = nodes_project(tmp_path, migration=NODES.replace("host: exec-north",
                                                           "host: exec-nort"))
    assert problems(proj.root) == [
        "migration.yaml:5: execution node 'north': host: 'exec-nort' is no host of "
        "inventory/hosts.yml (did you mean 'exec-north'?)"]


def test_execution_keys_are_checked_with_did_you_mean(tmp_path: Path) -> None:
    proj = nodes_project(tmp_path, migration=NODES.replace(
        "runner: /opt", "runer: /opt").replace("  nodes:", "  nodez:"))
    found = problems(proj.root)
    assert found == ["migration.yaml:4: unknown key 'nodez' in execution (did you mean "
                     "'nodes'?)"], found
    proj = nodes_project(tmp_path / "b", migration=NODES.replace("runner: /opt", "runer: /opt"))
    assert problems(proj.root) == ["migration.yaml:6: unknown key 'runer' in execution node "
                                   "'south' (did you mean 'runner'?)"]
    proj = nodes_project(tmp_path / "c", migration=NODES.replace("{host: exec-north}", "{}"))
    assert problems(proj.root) == ["migration.yaml:5: execution node 'north' needs 'host'"]


def test_a_node_variable_without_execution_nodes_is_refused(tmp_path: Path) -> None:
    proj = nodes_project(tmp_path, migration="name: nodes\ninventory: inventory/hosts.yml\n")
    found = problems(proj.root)
    assert len(found) == 3 and all("nodes: none: migration.yaml has no execution.nodes" in p
                                   for p in found), found


def test_plan_counts_the_hosts_of_each_node(tmp_path: Path) -> None:
    proj = nodes_project(tmp_path)
    done = proj.migrate("--output", "json", "plan", "1", "--host", "north", "--host", "south")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["execution"] == {
        "north": {"hosts": 2, "node_host": "exec-north"},
        "south": {"hosts": 1, "node_host": "exec-south"},
        "here": {"hosts": 1, "node_host": None}}
    text = proj.migrate("plan", "1", "--host", "north", "--host", "south").stdout
    assert "playbooks run on: north 2 hosts (on exec-north), south 1 host (on exec-south), " \
           "here 1 host (this machine)" in text


# --- the routing runner ---------------------------------------------------------------------
def request(hosts: list[Host], tmp_path: Path) -> PlaybookRequest:
    return PlaybookRequest(playbook=tmp_path / "p.yml", hosts=tuple(hosts),
                           inventory=tmp_path / "i.yml", extravars={}, artifacts_dir=tmp_path)


def hosts(*spec: tuple[str, str]) -> list[Host]:
    return [Host(name, {"migrate_execution_node": node} if node else {}) for name, node in spec]


def test_routing_runs_the_parts_at_once_and_merges_their_results(tmp_path: Path) -> None:
    started: list[str] = []
    both = threading.Barrier(2, timeout=5)  # here and the node must be in flight together

    def part(outcome: bool) -> FakePlaybookRunner:
        def handle(req: PlaybookRequest, cancel: CancelToken) -> bool:
            started.extend(h.name for h in req.hosts)
            both.wait()
            return outcome
        return FakePlaybookRunner(handle)

    here, east = part(True), part(False)
    routed = RoutedPlaybookRunner(here, {"east": east})  # type: ignore[dict-item]
    group = routed.run_playbook(request(hosts(("a", ""), ("b", "east"), ("c", ""),
                                              ("d", "east")), tmp_path), CancelToken())
    assert [h.name for h in here.requests[0].hosts] == ["a", "c"]
    assert [h.name for h in east.requests[0].hosts] == ["b", "d"]
    assert list(group.results) == ["a", "b", "c", "d"]  # the request's order
    assert [r.ok for r in group.results.values()] == [True, False, True, False]
    assert group.results["b"].failure is FailureKind.EXIT
    assert sorted(started) == ["a", "b", "c", "d"]


def test_a_part_that_cannot_start_fails_its_hosts_not_the_others(tmp_path: Path) -> None:
    def broken(req: PlaybookRequest, cancel: CancelToken) -> GroupResult:
        raise RunnerError("ansible-playbook is nowhere")

    lost = FakePlaybookRunner(lambda req, cancel: GroupResult({
        h.name: Result.failed(h.name, FailureKind.UNREACHABLE, "execution node west lost")
        for h in req.hosts}))
    routed = RoutedPlaybookRunner(FakePlaybookRunner(broken),
                                  {"west": lost, "east": FakePlaybookRunner()})  # type: ignore[dict-item]
    group = routed.run_playbook(request(hosts(("a", ""), ("b", "west"), ("c", "east")),
                                        tmp_path), CancelToken())
    assert group.results["a"].failure is FailureKind.EXIT
    assert "ansible-playbook is nowhere" in group.results["a"].detail
    assert group.results["b"].failure is FailureKind.UNREACHABLE
    assert group.results["c"].ok


def test_one_part_goes_straight_to_its_runner(tmp_path: Path) -> None:
    here = FakePlaybookRunner()
    routed = RoutedPlaybookRunner(here)
    routed.run_playbook(request(hosts(("a", ""), ("b", "")), tmp_path), CancelToken())
    assert len(here.requests) == 1
    with pytest.raises(RunnerError, match="no execution node 'x'"):
        routed.run_playbook(request(hosts(("a", "x")), tmp_path), CancelToken())
