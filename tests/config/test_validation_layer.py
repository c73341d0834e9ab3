"""Validation before anything runs (issue 25) through one validation layer (issue 21).

The repository's own project, copied to a temp dir and broken one way at a time: each
mistake is one FILE:LINE line naming it (with "did you mean" for a misspelt key), never
its knock-on effects, and `migrate validate` exits 2 without a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.config.project import load_project
from orchestrator.rehearsal.scenario import load_scenarios

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    out = tmp_path / "mma"
    out.mkdir()
    for part in ("migration.yaml", "phases", "playbooks", "rollback", "inventory", "sandbox",
                 "rehearsals"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, out / part)
        elif src.exists():
            shutil.copy(src, out / part)
    return out


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def migrate(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "--project", str(root), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def problems_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_project(root)
    return [str(p) for p in info.value.problems]


def test_the_root_project_validates(root: Path) -> None:
    res = migrate(root, "validate")
    assert res.returncode == 0, res.stderr


def test_a_metric_probed_from_a_host_not_in_the_inventory_is_one_line(root: Path) -> None:
    migration = root / "migration.yaml"
    edit(migration, "    from: main\n    timeout: 2s\n", "    from: pc3\n    timeout: 2s\n")
    res = migrate(root, "validate")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    line = line_of(migration, "from: pc3")
    assert res.stderr.strip().splitlines() == [
        f"migration.yaml:{line}: metric 'pc2_reachable': from: 'pc3' is no host or group of "
        "inventory/hosts.yml"]
    # plan refuses it the same way, before anything is recorded
    plan = migrate(root, "plan", "1", "--host", "main")
    assert plan.returncode == 2 and f"migration.yaml:{line}:" in plan.stderr
    assert not (root / ".migrate").exists()


def test_a_step_on_a_host_not_in_the_inventory_is_one_line(root: Path) -> None:
    phase = root / "phases" / "1-infrastructure.yaml"
    edit(phase, "    hosts: [main]\n", "    hosts: [pc3]\n")
    res = migrate(root, "validate")
    assert res.returncode == 2
    line = line_of(phase, "hosts: [pc3]")
    assert res.stderr.strip().splitlines() == [
        f"phases/1-infrastructure.yaml:{line}: step 'test-instance': hosts: 'pc3' is no host "
        "or group of inventory/hosts.yml"]


def test_a_typo_in_a_trigger_is_one_error_with_a_suggestion(root: Path) -> None:
    migration = root / "migration.yaml"
    edit(migration, "vram_degradation:      {metric: vram_used_mib, degrade_pct: 20",
         "vram_degradation:      {metric: vram_used_mib, degrade_pc: 20")
    line = line_of(migration, "degrade_pc: 20")
    assert problems_of(root) == [
        f"migration.yaml:{line}: unknown key 'degrade_pc' in trigger 'vram_degradation' "
        "(did you mean 'degrade_pct'?)"]
    res = migrate(root, "validate")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_a_broken_metric_is_reported_once_not_at_every_trigger_and_step(root: Path) -> None:
    migration = root / "migration.yaml"
    edit(migration, "    address: '{{ hostvars.pc2.ansible_host }}",
         "    adress: '{{ hostvars.pc2.ansible_host }}")
    edit(migration, "  agent_health:           # BaseAgent health endpoint\n    source: http",
         "  agent_health:           # BaseAgent health endpoint\n    sorce: http")
    found = problems_of(root)
    assert found == [
        f"migration.yaml:{line_of(migration, 'sorce: http')}: unknown key 'sorce' in metric "
        "'agent_health' (did you mean 'source'?)",
        f"migration.yaml:{line_of(migration, 'adress:')}: unknown key 'adress' in metric "
        "'pc2_reachable' (did you mean 'address'?)"]


def test_unknown_keys_in_a_phase_file_and_a_step_get_suggestions(root: Path) -> None:
    phase = root / "phases" / "2-baseagent-integration.yaml"
    text = phase.read_text()
    phase.write_text(text.replace("triggers:", "trigers:", 1)
                     .replace("    playbook: ", "    playbok: ", 1))
    found = problems_of(root)
    assert found == [
        f"phases/2-baseagent-integration.yaml:{line_of(phase, 'trigers:')}: unknown key "
        "'trigers' in phase (did you mean 'triggers'?)",
        f"phases/2-baseagent-integration.yaml:{line_of(phase, 'playbok:')}: unknown key "
        "'playbok' in step 'snapshot' (did you mean 'playbook'?)"], found


def test_unknown_keys_in_a_scenario_get_suggestions(root: Path) -> None:
    scenario = root / "rehearsals" / "typo.yaml"
    scenario.write_text("description: a typo\nexpect:\n  exit_cod: 1\n  fird: t\n")
    with pytest.raises(ConfigError) as info:
        load_scenarios(root)
    found = [str(p) for p in info.value.problems]
    assert "rehearsals/typo.yaml:3: unknown key 'exit_cod' in expect (did you mean " \
           "'exit_code'?)" in found, found
    assert "rehearsals/typo.yaml:4: unknown key 'fird' in expect (did you mean 'fired'?)" \
        in found, found


def test_plan_of_a_later_phase_in_a_fresh_copy_says_when_its_baseline_is_captured(
        root: Path) -> None:
    res = migrate(root, "plan", "4", "--host", "main")
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.strip().startswith("vram_vs_pre_migr"))
    assert "will be captured by phase 1's step 'pre-migration-baseline'" in line, line
    assert "phase 1 is pending here" in line
    degrade = next(x for x in res.stdout.splitlines() if x.strip().startswith("vram_degrad"))
    assert "sampled at phase start" in degrade
    # a baseline that no required phase captures is still refused, with its hint
    edit(root / "migration.yaml", "baseline: pre-migration}", "baseline: pre-deploy}")
    refused = migrate(root, "plan", "4", "--host", "main")
    assert refused.returncode == 2
    assert "migrate baseline capture --host main --name pre-deploy" in refused.stderr


def test_config_does_not_import_the_metric_sources() -> None:
    code = ("import sys, orchestrator.config.project, orchestrator.rehearsal.scenario; "
            "print(sorted(m for m in sys.modules if m.startswith(('orchestrator.metrics', 'orchestrator.monitor'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out


def test_the_readme_counts_the_triggers_of_the_project_and_links_the_reference() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    project, _ = load_project(ROOT)
    counts = [int(n) for n in re.findall(r"defines (\d+) triggers", readme)]
    assert counts == [len(project.triggers)], counts
    assert "../shared/SPEC.md" not in readme
    assert "(docs/reference.md)" in readme and (ROOT / "docs" / "reference.md").is_file()


def test_the_reference_lists_every_key_the_schemas_accept() -> None:
    import orchestrator.config.project as p
    import orchestrator.metrics.sources  # noqa: F401 - registers the sources
    import orchestrator.rehearsal.scenario as s
    from orchestrator.config.schema import Schema, source_schemas

    reference = (ROOT / "docs" / "reference.md").read_text()
    schemas = [v for mod in (p, s) for v in vars(mod).values() if isinstance(v, Schema)]
    keys = {k for schema in schemas for k in schema.keys}
    keys |= {k for spec in source_schemas().values() for k in spec.keys}
    keys |= {f"source: {name}" for name in source_schemas()}
    missing = sorted(k for k in keys if f"`{k}`" not in reference)
    assert not missing, f"docs/reference.md does not list {missing}"


def test_every_test_file_the_docs_and_code_name_exists() -> None:
    """The tests moved into floors (tests/<floor>/); a path left at tests/test_x.py sends
    the reader nowhere."""
    import re

    named = re.compile(r"tests/[A-Za-z0-9_/]*\.py")
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "deploy").rglob("*"),
             *(ROOT / "bench").rglob("*.py"), *(ROOT / "orchestrator").rglob("*.py")]
    stale = sorted(f"{text.relative_to(ROOT)}: {path}"
                   for text in texts if text.is_file() and text.suffix in (".md", ".py")
                   for path in named.findall(text.read_text())
                   if not (ROOT / path).is_file())
    assert not stale, stale


def _section(reference: str, title: str) -> str:
    assert title in reference, f"docs/reference.md has no {title!r} section"
    start = reference.index(title)
    end = reference.find("\n### ", start + 1)
    following = reference.find("\n#### ", reference.index("\n", start) + 1)
    if title.startswith("#### ") and following != -1:
        end = following if end == -1 else min(end, following)
    return reference[start:] if end == -1 else reference[start:end]


def test_the_reference_lists_every_key_of_the_web_config_file() -> None:
    from orchestrator.telemetry.web_config import _TLS_KEYS, _TOP_KEYS

    section = _section((ROOT / "docs" / "reference.md").read_text(),
                       "### the `--web-config` file")
    missing = [k for k in (*_TOP_KEYS, *_TLS_KEYS) if f"| `{k}` |" not in section]
    assert not missing, f"docs/reference.md's --web-config section does not list {missing}"
    assert "own directory" in section  # relative paths: from the file's directory


def test_the_reference_lists_every_key_of_a_notifications_body() -> None:
    """The body is taken from what the real hook and sender POST, not from a list here."""
    from orchestrator.core.events import NOTIFIABLE, EventKind, RunEvent
    from orchestrator.core.model import Notifier
    from orchestrator.notify.hook import NotificationHook
    from orchestrator.notify.sender import Notifications

    posted: list[dict[str, object]] = []
    notifications = Notifications((Notifier("http://sink/", tuple(k.value for k in NOTIFIABLE)),),
                                  "p", post=lambda url, payload: posted.append(payload))
    hook = NotificationHook(notifications)
    hook(RunEvent(EventKind.TRIGGER_FIRED, "r1", "main", 1, None, "gpu hot",
                  {"trigger": "gpu_hot", "value": 91.0, "threshold": 85}))
    notifications.close()
    [body] = posted
    section = _section((ROOT / "docs" / "reference.md").read_text(),
                       "#### a notification (the JSON body")
    missing = [k for k in body if f"| `{k}` |" not in section]
    missing += [k.value for k in NOTIFIABLE if k.value not in section]
    assert not missing, f"docs/reference.md's notification section does not list {missing}"
