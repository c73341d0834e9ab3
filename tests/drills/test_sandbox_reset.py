"""A provisioned sandbox is kept and restored for the next drill when the project ships
playbooks/sandbox/start.yml: real ansible-playbook runs a tiny project's provision and
start playbooks on two local hosts; no stand-in agent is started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator.config.inventory import Host, read_inventory
from orchestrator.rehearsal.sandbox import PROVISION, PROVISIONED, START, Sandbox

pytestmark = pytest.mark.integration

PLAY = """\
- name: {what}
  hosts: all
  gather_facts: false
  tasks:
    - name: its directory
      ansible.builtin.file:
        path: "{{{{ sandbox_dir }}}}/{dir}"
        state: directory
        mode: "0700"
    - name: {what}
      ansible.builtin.copy:
        dest: "{{{{ sandbox_dir }}}}/{path}"
        content: "{what} {{{{ inventory_hostname }}}}\\n"
        mode: "0644"
"""


def _project(root: Path, start: bool = True) -> tuple[Sandbox, list[Host]]:
    (root / "playbooks" / "sandbox").mkdir(parents=True)
    (root / PROVISION).write_text(PLAY.format(what="provisioned", dir="agent", path="agent/REVISION")
                                  + PLAY.format(what="started", dir="run", path="run/agent.pid.log"))
    if start:
        (root / START).write_text(PLAY.format(what="restarted", dir="run",
                                                       path="run/agent.pid.log"))
    inventory = root / "inventory.yml"
    inventory.write_text("all:\n  vars:\n    ansible_connection: local\n"
                         f"    ansible_python_interpreter: {sys.executable}\n"
                         "    sandbox_dir: '{{ inventory_dir }}/box/{{ inventory_hostname }}'\n"
                         "  hosts:\n    one: {}\n    two: {}\n")
    hosts = list(read_inventory(inventory).hosts.values())
    return Sandbox(root, inventory, lambda line: None), hosts


def test_a_provisioned_sandbox_is_restored_and_started_instead_of_provisioned(
        tmp_path: Path) -> None:
    box, hosts = _project(tmp_path)
    one = box.dir_of(hosts[0])
    assert box.fresh(hosts, {"one": {"xid_errors": 2}}) is False  # nothing kept yet
    assert (one / "faults.json").read_text() == '{"xid_errors": 2}'
    box.provision(hosts)
    # what the drill then leaves behind, and what a reset must not bring back
    (one / "backups").mkdir()
    assert (one / "run" / "agent.pid.log").read_text() == "started one\n"

    assert box.fresh(hosts, {"two": {"partition": {"on": "coordinate"}}}) is True
    assert (one / "agent" / "REVISION").read_text() == "provisioned one\n"
    assert not (one / "backups").exists() and not (one / "run").exists()
    assert not (one / "faults.json").exists()  # this drill's faults only
    two = box.dir_of(hosts[1])
    assert (two / "faults.json").read_text() == '{"partition": {"on": "coordinate"}}'
    box.start()
    assert (one / "run" / "agent.pid.log").read_text() == "restarted one\n"

    # a project file changed since: provision again, from empty directories
    (tmp_path / PROVISION).write_text((tmp_path / PROVISION).read_text() + "\n")
    assert box.fresh(hosts, {}) is False
    assert not any(one.iterdir())


def test_without_start_yml_nothing_is_kept(tmp_path: Path) -> None:
    box, hosts = _project(tmp_path, start=False)
    for host in hosts:
        (box.dir_of(host) / "agent").mkdir(parents=True)
    box.keep_provisioned(hosts)
    assert not (tmp_path / PROVISIONED).exists()
    assert box.fresh(hosts, {}) is False
