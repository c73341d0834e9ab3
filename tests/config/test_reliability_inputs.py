"""Hostile and unlucky inputs, end to end through the real `migrate` command: an alias bomb
and a nesting bomb, several starts racing for one host, inventory values written to break
out of a shell, and a webhook URL whose path is a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.projects import make_project
from tests.support.servers import WebhookSink, serving

pytestmark = pytest.mark.integration

BOMB = ('    lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
        + "".join(f"    lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
        + "    payload: *a9\n")


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "w", "phase: 1\nsteps:\n  - id: w\n    wait: 1ms\n")
    inv = (proj.root / "inventory/hosts.yml").read_text()
    proj.write("inventory/hosts.yml", inv.replace("  vars:\n", "  vars:\n" + BOMB, 1))
    t0 = time.monotonic()
    res = proj.migrate("phase", "1", "--host", "main", timeout=60)
    took = time.monotonic() - t0
    assert res.returncode == 2, res.stderr
    assert "inventory/hosts.yml:" in res.stderr and "alias bomb" in res.stderr
    assert "Traceback" not in res.stderr
    assert took < 10  # the interpreter's start-up and nothing else
    assert not (proj.root / ".migrate").exists()


def test_a_bomb_in_migration_yaml_and_a_nesting_bomb_are_refused(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "w", "phase: 1\nsteps:\n  - id: w\n    wait: 1ms\n")
    base = (proj.root / "migration.yaml").read_text()
    proj.write("migration.yaml", base + "description:\n" + BOMB.replace("    ", "  "))
    res = proj.migrate("validate", timeout=60)
    assert res.returncode == 2 and "migration.yaml:" in res.stderr, res.stderr
    # libyaml's composer recurses in C: 100 000 nested lists would crash the interpreter
    proj.write("migration.yaml", base + "description: " + "[" * 100_000 + "]" * 100_000 + "\n")
    res = proj.migrate("validate", timeout=60)
    assert res.returncode == 2, (res.returncode, res.stderr[-500:])
    assert "migration.yaml:4: collections nested more than" in res.stderr


def test_concurrent_starts_on_one_host_run_exactly_once(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    proj.phase(1, "once", """\
        phase: 1
        steps:
          - id: mark
            command: 'echo run >> {{ vars.marker_dir }}/{{ host }}-runs'
            rollback: none
          - id: hold
            wait: 4s
        """)
    procs = [proj.spawn("phase", "1", "--host", "main") for _ in range(5)]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 4, 4, 4, 4], results
    assert (proj.markers / "main-runs").read_text() == "run\n"
    for code, err in results:
        assert "Traceback" not in err
        if code == 4:
            assert "main" in err


EVIL = {
    "semicolon": "x; touch {canary}",
    "subst": "$(touch {canary})",
    "backticks": "`touch {canary}`",
    "newline": "x\ntouch {canary}",
    "quotes": "'; touch {canary}; '",
    "dquotes": "\"; touch {canary}; \"",
    "glob": "* ?",
}


def test_hostile_inventory_values_reach_no_shell(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    proj = make_project(tmp_path, migration=(
        "name: hostile\ninventory: inventory/hosts.yml\npoll_interval: 200ms\n"
        "metrics:\n  echoes:\n    source: command\n"
        "    command: 'test {{ vars.evil_semicolon }} = {{ vars.evil_semicolon }}'\n"
        "  lost_peer:\n    source: tcp\n    address: '{{ hostvars.far.ansible_host }}:22'\n"
        "    from: far\n    timeout: 1s\n"
        "triggers: {}\n"))
    inv = (proj.root / "inventory/hosts.yml").read_text()
    evil_vars = "".join(f"    evil_{k}: {json.dumps(v.format(canary=canary))}\n"
                        for k, v in EVIL.items())
    far = ("    far:\n      ansible_connection: ssh\n"
           f"      ansible_host: {json.dumps(f'$(touch {canary})')}\n"
           f"      ansible_user: {json.dumps(f'x; touch {canary}')}\n"
           "      ansible_port: 1\n")
    inv = inv.replace("  vars:\n", "  vars:\n" + evil_vars, 1).replace("  hosts:\n",
                                                                       "  hosts:\n" + far, 1)
    proj.write("inventory/hosts.yml", inv)
    echo = " ".join(f"{{{{ vars.evil_{k} }}}}" for k in EVIL)
    proj.phase(1, "hostile", f"""\
        phase: 1
        triggers: []
        steps:
          - id: echo
            command: 'printf "%s|" {echo} > {{{{ vars.marker_dir }}}}/{{{{ host }}}}-echo'
            rollback_command: 'printf "%s|" {echo} > {{{{ vars.marker_dir }}}}/{{{{ host }}}}-undo'
          - id: probe
            check: echoes
            timeout: 5s
          - id: fail
            command: 'exit 1'
            rollback: none
        """)
    res = proj.migrate("phase", "1", "--host", "main")
    assert res.returncode == 1, res.stderr  # rolled back after `fail`
    expected = "".join(v.format(canary=canary) + "|" for v in EVIL.values())
    assert (proj.markers / "main-echo").read_text() == expected
    assert (proj.markers / "main-undo").read_text() == expected
    # the same values on a host reached over SSH (fabric), and probed `from:` it
    proj.phase(2, "probe", """\
        phase: 2
        triggers: []
        preconditions: [lost_peer]
        steps:
          - id: w
            wait: 1ms
        """)
    res2 = proj.migrate("phase", "2", "--host", "main")
    assert res2.returncode == 4, res2.stderr  # the probe from `far` could not connect
    proj.phase(3, "far", """\
        phase: 3
        triggers: []
        steps:
          - id: far
            command: 'echo {{ vars.evil_subst }}'
            rollback: none
            timeout: 20s
        """)
    res3 = proj.migrate("phase", "3", "--host", "far")
    assert res3.returncode == 1, res3.stderr  # unreachable: failed, nothing to undo
    assert "ssh to" in res3.stderr
    assert "Traceback" not in res.stderr + res2.stderr + res3.stderr
    assert not canary.exists()


def test_no_webhook_secret_in_journal_logs_or_artifacts(tmp_path: Path) -> None:
    secret = "T0SECRET/B0SECRET/xoxbS3CR3TT0K3N"
    with serving(WebhookSink(fail_first=1000)) as sink:  # answers 500: failures get logged
        url = sink.url.replace("/hook", f"/services/{secret}?token=q5ecretq")
        proj = make_project(tmp_path, migration=(
            "name: secret\ninventory: inventory/hosts.yml\npoll_interval: 200ms\n"
            f"notify:\n  - url: '{url}'\n"))
        proj.phase(1, "fails", """\
            phase: 1
            steps:
              - id: one
                playbook: playbooks/touch.yml
                rollback: rollback/untouch.yml
              - id: two
                command: 'exit 3'
                rollback: none
            """)
        res = proj.migrate("-v", "phase", "1", "--host", "main")
        assert res.returncode == 1, res.stderr
        assert sink.attempts > 0  # the webhook really was called (and failed)
        outputs = [res.stdout, res.stderr]
        for cmd in (("--output", "json", "history"), ("report",), ("status",),
                    ("--output", "json", "validate"), ("plan", "1", "--host", "main")):
            r = proj.migrate(*cmd)
            outputs += [r.stdout, r.stderr]
    leaks = [text for text in outputs if "S3CR3T" in text or "q5ecretq" in text]
    assert not leaks, leaks[0][-2000:]
    for path in (proj.root / ".migrate").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"S3CR3T" not in data and b"q5ecretq" not in data, path


def test_the_real_project_still_validates() -> None:
    """The suite mutates copies of this project; the original must be sound."""
    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(repo),
                          "validate"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, MIGRATE_PROJECT=""))
    assert res.returncode == 0, res.stderr
