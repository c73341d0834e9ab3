"""`migrate analyze PATH --graph`: the program graph of a small system of our own
(tests/fixtures/system), of the shared manifests, and bad input (spec section 6)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "system"
CODE = FIXTURE / "code"
MAIN = FIXTURE / "startup_config.main.yaml"
PC2 = FIXTURE / "startup_config.pc2.yaml"
SEED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared" / "seed",
                         Path("/work/shared/seed")) if p.is_dir()),
            Path("/work/shared/seed"))  # the seed's data: ../shared/seed beside the repo


def migrate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def graph_json(*args: str) -> dict[str, Any]:
    done = migrate("--output", "json", "analyze", *args, "--graph")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def system() -> dict[str, Any]:
    return graph_json(str(CODE), "--services", str(MAIN), "--services", str(PC2))


def test_nodes_with_machines_ports_and_what_their_code_holds(system: dict[str, Any]) -> None:
    nodes = {n["name"]: n for n in system["nodes"]}
    assert list(nodes) == ["Hub", "Twin", "Planner", "Status", "Speaker", "Listener", "Broken"]
    table = {name: (n["machines"], n["file"], n["port"], n["health_check_port"], n["health"],
                    n["sockets"], n["threads"], n["migrated"], n["syntax_errors"])
             for name, n in nodes.items()}
    assert table == {
        "Hub": (["main"], "agents/hub_agent.py", 7000, 8000, "tcp", 1, 0, False, 0),
        "Twin": (["main"], "agents/twin_agent.py", 7100, 8100, "http", 0, 0, True, 0),
        "Planner": (["main"], "agents/planner_agent.py", 7150, 8150, "tcp", 3, 0, False, 0),
        "Status": (["main"], "agents/status_agent.py", 7500, 8500, "tcp", 0, 0, True, 0),
        "Speaker": (["pc2"], "pc2/speaker_agent.py", 7200, 8200, "tcp", 2, 0, False, 0),
        "Listener": (["pc2"], "pc2/listener_agent.py", 7300, 8300, "tcp", 1, 1, False, 0),
        "Broken": (["pc2"], "pc2/broken_agent.py", 7400, 8400, "tcp", 1, 0, False, 1),
    }
    assert nodes["Planner"]["variants"] == ["agents/planner_agent_test.py"]
    assert all(n["variants"] == [] for name, n in nodes.items() if name != "Planner")
    assert not any(n["script_missing"] for n in nodes.values())
    assert all(n["risk"]["level"] for n in nodes.values())


BASE = "common/base_agent.py:23"
HUB = "inherited from BaseAgent: connect REQ f'tcp://{HUB_HOST}:{HUB_PORT}' (port 7000, bound by Hub)"


def test_edges_declared_and_seen_with_file_line_and_how(system: dict[str, Any]) -> None:
    edges = {(e["from"], e["to"]): (e["declared"], e["cross_machine"],
                                    [(f"{s['file']}:{s['line']}", s["how"]) for s in e["seen"]])
             for e in system["edges"]}
    assert edges == {
        ("Twin", "Hub"): (True, False, [(BASE, HUB)]),
        ("Planner", "Hub"): (True, False, [(BASE, HUB)]),
        ("Status", "Hub"): (True, False, [(BASE, HUB)]),
        ("Speaker", "Hub"): (True, True, [(BASE, HUB)]),
        ("Listener", "Hub"): (True, True, [(BASE, HUB)]),
        ("Broken", "Hub"): (True, True, [(BASE, HUB)]),
        ("Planner", "Twin"): (True, False, [
            ("agents/planner_agent.py:12",
             "connect REQ 'tcp://localhost:7100' (port 7100, bound by Twin)")]),
        ("Status", "Twin"): (True, False, []),
        ("Planner", "Speaker"): (False, True, [
            ("agents/planner_agent.py:14",
             "connect REQ get_service_address('Speaker') (via get_service_address('Speaker'))")]),
        ("Speaker", "Listener"): (True, False, [
            ("pc2/speaker_agent.py:18",
             "connect REQ f\"tcp://localhost:{get_env('LISTENER_PORT', 7300)}\" "
             "(port 7300, bound by Listener)")]),
        ("Listener", "Speaker"): (True, False, [
            ("pc2/listener_agent.py:16",
             "connect SUB 'tcp://%s:%d' % (get_service_ip('pc2'), 7201) "
             "(port 7201 on pc2, bound by Speaker)")]),
        ("Broken", "Twin"): (True, True, [
            ("pc2/broken_agent.py:14",
             "connect REQ f'tcp://{TWIN_HOST}:{TWIN_PORT}' (port 7100, bound by Twin)")]),
    }
    inherited = [s for e in system["edges"] for s in e["seen"] if s.get("inherited")]
    assert len(inherited) == 6


def test_drift_unresolved_and_unknown(system: dict[str, Any]) -> None:
    drift = system["drift"]
    assert [(e["from"], e["to"]) for e in drift["undeclared"]] == [("Planner", "Speaker")]
    assert drift["unseen"] == [{"from": "Status", "to": "Twin", "code": True}]
    assert system["unresolved"] == [{
        "file": "agents/planner_agent.py", "line": 25, "endpoint": "SUB addr",
        "agent": "Planner", "why": "cannot be followed"}]
    assert system["unknown"] == [
        {"name": "Oracle", "from": "Planner", "file": str(MAIN), "line": 20,
         "how": "declared in a manifest"},
        {"name": "Archivist", "from": "Hub", "file": "agents/hub_agent.py", "line": 22,
         "how": "discover_service('Archivist')"}]


def test_order_from_the_declared_edges(system: dict[str, Any]) -> None:
    order = [(s["step"], s["agents"], s["units"], s["migrated"], s["why"])
             for s in system["order"]]
    assert order == [
        (1, ["Hub"], [], [], "needs nothing; 6 agents of later steps wait for it"),
        (2, ["Twin", "Speaker", "Listener"], [["Speaker", "Listener"]], ["Twin"],
         "waits for Hub (step 1); Speaker, Listener need each other: migrated together; "
         "3 agents of later steps wait for it; already migrated: Twin"),
        (3, ["Planner", "Status", "Broken"], [], ["Status"],
         "waits for Twin (step 2), Hub (step 1); no later step waits for it; "
         "already migrated: Status"),
    ]
    assert [s["agent"] for s in system["summary"]] == [
        "Broken", "Listener", "Hub", "Planner", "Speaker", "Status", "Twin"]
    assert system["totals"]["variant_groups"] == 1


DOT_EDGES = {
    '"Broken" -> "Hub" [penwidth=2.5, label="cross-machine"];',
    '"Broken" -> "Twin" [penwidth=2.5, label="cross-machine"];',
    '"Listener" -> "Hub" [penwidth=2.5, label="cross-machine"];',
    '"Listener" -> "Speaker";',
    '"Planner" -> "Hub";',
    '"Planner" -> "Speaker" [style=dashed, color=firebrick, xlabel="undeclared", '
    'penwidth=2.5, label="cross-machine"];',
    '"Planner" -> "Twin";',
    '"Speaker" -> "Hub" [penwidth=2.5, label="cross-machine"];',
    '"Speaker" -> "Listener";',
    '"Status" -> "Hub";',
    '"Status" -> "Twin";',
    '"Twin" -> "Hub";',
}


def test_dot_is_drawn_by_graphviz(tmp_path: Path) -> None:
    done = migrate("analyze", str(CODE), "--graph", "--services", str(MAIN),
                   "--services", str(PC2), "--format", "dot")
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert {line for line in lines if "->" in line} == DOT_EDGES
    assert 'label="main"; style=rounded; color=gray50;' in lines
    assert '"Twin" [label="Twin", fillcolor=palegreen];' in lines
    dot = shutil.which("dot")
    assert dot, "Graphviz's dot is needed (Debian package graphviz)"
    (tmp_path / "g.dot").write_text(done.stdout)
    drawn = subprocess.run([dot, "-Tsvg", str(tmp_path / "g.dot")], capture_output=True,
                           text=True, timeout=60)
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.count('class="node"') == 7
    assert drawn.stdout.count('class="edge"') == 12
    assert "stroke-dasharray" in drawn.stdout  # the undeclared edge


def test_mermaid_text_and_markdown() -> None:
    args = (str(CODE), "--graph", "--services", str(MAIN), "--services", str(PC2))
    mermaid = migrate("analyze", *args, "--format", "mermaid").stdout.splitlines()
    assert mermaid[0] == "flowchart LR"
    assert "  n2 -. cross-machine .-> n4" in mermaid  # Planner -> Speaker, undeclared
    assert "  n5 --> n4" in mermaid  # Listener -> Speaker, declared
    assert "  n6 ==> n1" in mermaid  # Broken -> Twin, declared, cross-machine
    text = migrate("analyze", *args).stdout.splitlines()
    assert text[0].startswith("7 agents on main, pc2, from the manifests: 11 declared edges, "
                              "11 seen in code, 1 undeclared, 1 unseen; 1 unresolved endpoint, 2 unknown names; 3 steps")
    rows = [line.split()[:2] for line in text[2:10]]
    assert rows == [["STEP", "AGENT"], ["1", "Hub"], ["2", "Twin"], ["2", "Speaker"],
                    ["2", "Listener"], ["3", "Planner"], ["3", "Status"], ["3", "Broken"]]
    assert "  Planner -> Speaker [cross-machine]" in text
    assert "  agents/planner_agent.py:25  Planner: SUB addr  (cannot be followed)" in text
    md = migrate("analyze", *args, "--format", "md").stdout
    assert "| 2 | Speaker | pc2 | 7200 |" in md


def test_compose_services_are_nodes(tmp_path: Path) -> None:
    compose = tmp_path / "edge" / "docker-compose.yml"
    compose.parent.mkdir()
    compose.write_text(
        "services:\n"
        "  twin:\n    command: python agents/twin_agent.py\n    ports: ['7100:7100']\n"
        "  planner:\n    command: [python, agents/planner_agent.py]\n"
        "    depends_on: {twin: {condition: service_started}}\n")
    graph = graph_json(str(CODE), "--services", str(compose))
    assert [(n["name"], n["machines"], n["file"], n["port"]) for n in graph["nodes"]] == [
        ("twin", ["edge"], "agents/twin_agent.py", 7100),
        ("planner", ["edge"], "agents/planner_agent.py", None)]
    [edge] = graph["edges"]
    assert (edge["from"], edge["to"], edge["declared"], edge["cross_machine"]) == \
        ("planner", "twin", True, False)
    assert [s["line"] for s in edge["seen"]] == [12]
    assert graph["order"][0]["agents"] == ["twin"]
    assert {u["name"] for u in graph["unknown"]} == {"Speaker"}  # looked up, not declared


def test_without_manifests_the_agents_are_the_classes() -> None:
    graph = graph_json(str(CODE))
    assert graph["source"] == "code"
    nodes = {n["name"]: n["port"] for n in graph["nodes"]}
    assert nodes == {"HubAgent": 7001, "PlannerAgent": 7150, "StatusAgent": 7500,
                     "TwinAgent": 7100, "BrokenAgent": 7400, "ListenerAgent": 7300,
                     "SpeakerAgent": 7200}
    edges = {(e["from"], e["to"]) for e in graph["edges"]}
    hub = {(a, "HubAgent") for a in nodes if a != "HubAgent"}
    assert edges == hub | {("PlannerAgent", "TwinAgent"), ("PlannerAgent", "SpeakerAgent"),
                           ("SpeakerAgent", "ListenerAgent"), ("ListenerAgent", "SpeakerAgent"),
                           ("BrokenAgent", "TwinAgent")}
    assert graph["drift"] == {"undeclared": [], "unseen": []}
    assert [s["agents"] for s in graph["order"]][0] == ["HubAgent"]


def test_shared_manifests_76_nodes_every_declared_edge_and_the_order(tmp_path: Path) -> None:
    """The real system: its manifests, and the one agent file we have (the seed's
    ModelManagerAgent, at the script path of ModelManagerSuite)."""
    script = tmp_path / "main_pc_code" / "model_manager_suite.py"
    script.parent.mkdir()
    shutil.copyfile(SEED / "model_manager_agent.py", script)
    graph = graph_json(str(tmp_path), "--services", f"main={SEED}/startup_config.main.yaml",
                       "--services", f"pc2={SEED}/startup_config.pc2.yaml")
    assert len(graph["nodes"]) == 76
    declared = {(e["from"], e["to"]) for e in graph["edges"] if e["declared"]}
    import yaml
    main = yaml.safe_load((SEED / "startup_config.main.yaml").read_text())
    pc2 = yaml.safe_load((SEED / "startup_config.pc2.yaml").read_text())
    written = {(name, dep) for group in main["agent_groups"].values()
               for name, entry in group.items() for dep in entry.get("dependencies") or []}
    written |= {(entry["name"], dep) for entry in pc2["pc2_services"]
                for dep in entry.get("dependencies") or []}
    assert len(written) == 140
    assert declared == written
    step = {a: s["step"] for s in graph["order"] for a in s["agents"]}
    unit = {a: set(u) for s in graph["order"] for u in s["units"] for a in u}
    assert len(step) == 76
    for needer, needed in declared:
        assert step[needed] < step[needer] or needed in unit.get(needer, ()), (needer, needed)
    nodes = {n["name"]: n for n in graph["nodes"]}
    assert nodes["ObservabilityHub"]["machines"] == ["main", "pc2"]
    assert sum(n["script_missing"] for n in nodes.values()) == 75  # marked, not skipped
    assert nodes["ModelManagerSuite"]["risk"]["level"] == "CRITICAL"
    undeclared = {(e["from"], e["to"]): e["cross_machine"] for e in graph["drift"]["undeclared"]}
    assert undeclared == {("ModelManagerSuite", "VRAMOptimizerAgent"): False,
                          ("ModelManagerSuite", "VisionProcessingAgent"): True}
    sdt = [e for e in graph["edges"] if (e["from"], e["to"]) ==
           ("ModelManagerSuite", "SystemDigitalTwin")][0]
    assert sdt["declared"] and [s["line"] for s in sdt["seen"]] == [3728, 3754, 3762, 4616,
                                                                    4641, 4649]


def test_a_missing_script_is_a_marked_node(tmp_path: Path) -> None:
    code = tmp_path / "code"
    shutil.copytree(CODE, code)
    (code / "pc2" / "speaker_agent.py").unlink()
    graph = graph_json(str(code), "--services", str(MAIN), "--services", str(PC2))
    speaker = [n for n in graph["nodes"] if n["name"] == "Speaker"][0]
    assert speaker["script_missing"] and speaker["risk"] is None and speaker["step"] == 2
    assert {"from": "Speaker", "to": "Listener", "code": False} in graph["drift"]["unseen"]
    text = migrate("analyze", str(code), "--graph", "--services", str(MAIN),
                   "--services", str(PC2)).stdout
    assert [line for line in text.splitlines() if " Speaker " in line][0] \
        .endswith("script missing; with Listener")


@pytest.mark.parametrize("text,line,words", [
    ("agent_groups:\n  core:\n    A: {port: 1\n  B: [\n", 4, "does not parse"),
    ("pc2_services:\n  - {name: A, port: 1}\n  - just a string\n", 3, "is not an agent"),
])
def test_a_bad_manifest_exits_2_with_file_and_line(tmp_path: Path, text: str, line: int,
                                                    words: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    done = migrate("analyze", str(CODE), "--graph", "--services", str(MAIN),
                   "--services", str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    [message] = done.stderr.splitlines()
    assert message.startswith(f"{bad}:{line}: ") and words in message


def test_bad_options_exit_2() -> None:
    assert migrate("analyze", str(CODE), "--graph", "--services", "/no/such.yaml").returncode == 2
    assert migrate("analyze", str(CODE), "--format", "dot").returncode == 2
    assert migrate("analyze", str(CODE), "--services", str(MAIN)).returncode == 2
    assert migrate("analyze", "/no/such/dir", "--graph").returncode == 2
