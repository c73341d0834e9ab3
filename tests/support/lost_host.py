"""A host lost mid-run, as tests/engine/test_lost_host.py proves it and bench/lost_host.py
measures it: the two-host lab project (main and pc2 in network namespaces,
tests/support/netns.py), and the phases that are talking to pc2 when its link is
cut (`Proj.reached` waits for that moment).

Each case of `CASES` is a phase whose step (or undo) is busy on pc2, over a connection
an earlier step opened, when the marker it names appears: `playbook` (a long Ansible
task, ControlPersist master open), `command` (a long command over the pooled fabric
connection), `rollback` (a long undo playbook, while the flag file `slow` is there).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.support.netns import Lab, long_step
from tests.support.projects import Proj, make_project, shell_play


def slow_undo(sleep: str) -> str:
    """An undo playbook that sleeps `sleep` seconds while the flag file `slow` is there."""
    return shell_play(
        "an undo that takes a while while the flag file is there", "undo",
        "echo undo {{ inventory_hostname }} {{ migrate_step }} >> {{ marker_dir }}/order.log;",
        f"if test -f {{{{ marker_dir }}}}/slow; then sleep {sleep}; fi;",
        "rm -f {{ marker_dir }}/{{ inventory_hostname }}-{{ migrate_step }}")


@dataclass(frozen=True)
class Case:
    """A phase, the marker (a file, or a line of order.log) after which pc2 is cut, the step
    pc2 is left needing a human for, and the marker that step leaves behind on pc2."""

    phase: str
    cut_at: str
    step: str
    leftover: str


def cases(sleep: str) -> dict[str, Case]:
    """The three cases, their long steps sleeping `sleep` seconds."""
    return {
        "playbook": Case("""\
            phase: 1
            triggers: []
            steps:
              - id: warm
                playbook: playbooks/touch.yml
                rollback: none
              - id: long
                playbook: playbooks/slow.yml
                rollback: rollback/slow_untouch.yml
            """, "pc2-long-started", "long", "pc2-long"),
        "command": Case(f"""\
            phase: 1
            triggers: []
            steps:
              - id: warm
                command: 'echo warm'
                rollback: none
              - id: long
                command: 'touch {{{{ vars.marker_dir }}}}/{{{{ host }}}}-long && sleep {sleep}'
                rollback_command: 'rm -f {{{{ vars.marker_dir }}}}/{{{{ host }}}}-long'
            """, "pc2-long", "long", "pc2-long"),
        "rollback": Case("""\
            phase: 1
            triggers: []
            steps:
              - id: one
                playbook: playbooks/touch.yml
                rollback: rollback/slow_untouch.yml
              - id: breaks
                command: 'exit 1'
                rollback: none
            """, "undo pc2 one", "one", "pc2-one"),
    }


def lab_project(tmp: Path, lab: Lab, migration: str, phase: str, sleep: str) -> Proj:
    """A project of main and pc2 in the lab, with the slow playbook and undo (sleeping
    `sleep` seconds) and phase 1 `phase`."""
    proj = make_project(tmp, migration=migration)
    proj.write("inventory/hosts.yml", lab.inventory(proj.markers, {"main": "main", "pc2": "pc2"}))
    proj.write("playbooks/slow.yml", long_step(sleep))
    proj.write("rollback/slow_untouch.yml", slow_undo(sleep))
    proj.phase(1, "lost", textwrap.dedent(phase))
    return proj


def case_project(tmp: Path, lab: Lab, migration: str, case: str, sleep: str) -> Proj:
    """The lab project of one of `cases` (the rollback case's undo made slow)."""
    proj = lab_project(tmp, lab, migration, cases(sleep)[case].phase, sleep)
    if case == "rollback":
        (proj.markers / "slow").write_text("")
    return proj
