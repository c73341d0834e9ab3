"""Service manifests read into one system (spec section 6, "The program graph")."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator._exceptions import ConfigError
from orchestrator.analysis.manifests import (
    HealthCheck,
    ManifestSource,
    load_system,
    order_of,
    parse_services_option,
    program_order,
)

SEED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared" / "seed",
                         Path("/work/shared/seed")) if p.is_dir()),
            Path("/work/shared/seed"))  # the seed's data: ../shared/seed beside the repo

MAP_SHAPE = """\
global_settings:
  environment: {LOG_LEVEL: INFO}
agent_groups:
  core:
    Registry:
      script_path: agents/registry.py
      port: "${PORT_OFFSET}+7200"
      health_check_port: "${PORT_OFFSET}+8200"
      dependencies: []
    Twin:
      script_path: agents/twin.py
      port: 7220
      health_check_port: 8220
      health_check: http
      dependencies:
        - Registry
        - Ghost
  empty_group:
"""

LIST_SHAPE = """\
# pc2
pc2_services:
  - {name: Cache, script_path: pc2/cache.py, host: 0.0.0.0, port: 7102,
     health_check_port: 8102, dependencies: [Twin]}
  - name: Hub
    script_path: hub.py
    port: 9000
    health_check_port: 9100
    dependencies: [Cache]
"""

COMPOSE = """\
services:
  db:
    image: postgres
    ports: ["5432:5432"]
  api:
    command: python agents/api.py --port 8000
    ports:
      - "18000:8000"
      - "18001:8001/tcp"
    depends_on:
      db: {condition: service_healthy}
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8001/health"]
  worker:
    command: ["python", "worker.py"]
    depends_on: [api, db]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_map_shape_ports_offset_health_and_unknown(tmp_path: Path) -> None:
    path = write(tmp_path, "startup_config.main.yaml", MAP_SHAPE)
    system = load_system([ManifestSource(path)], {"PORT_OFFSET": 100})
    assert list(system.agents) == ["Registry", "Twin"]
    registry, twin = system.agents["Registry"], system.agents["Twin"]
    assert (registry.port, registry.health_check_port) == (7300, 8300)
    assert registry.machines == ("main",)
    assert registry.health is HealthCheck.TCP
    assert (twin.port, twin.health, twin.health_path) == (7220, HealthCheck.HTTP, "/health")
    assert twin.dependencies == ("Registry", "Ghost")
    assert system.dependencies_of("Twin") == ("Registry",)
    assert system.dependents_of("Registry") == ("Twin",)
    [unknown] = system.unknown
    assert (unknown.agent, unknown.name, unknown.file, unknown.line) == ("Twin", "Ghost", str(path), 17)
    assert system.agents["Twin"].declared_at[0].line == 10


def test_port_offset_defaults_to_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "startup_config.main.yaml", MAP_SHAPE)
    assert load_system([ManifestSource(path)]).agents["Registry"].port == 7200


def test_list_shape_and_an_agent_on_two_machines(tmp_path: Path) -> None:
    main = write(tmp_path, "a/startup_config.main.yaml",
                 MAP_SHAPE + "  more:\n    Hub:\n      script_path: hub.py\n      port: 9000\n"
                             "      dependencies: [Twin]\n")
    pc2 = write(tmp_path, "b/startup_config.pc2.yaml", LIST_SHAPE)
    system = load_system([ManifestSource(main), ManifestSource(pc2)])
    assert system.machines == ("main", "pc2")
    assert len(system.agents) == 4
    hub = system.agents["Hub"]
    assert hub.machines == ("main", "pc2")
    assert hub.dependencies == ("Twin", "Cache")
    assert [str(d) for d in hub.declared_at] == [f"{main}:20", f"{pc2}:5"]
    cache = system.agents["Cache"]
    assert (cache.machines, cache.host, cache.port, cache.script) == (("pc2",), "0.0.0.0", 7102, "pc2/cache.py")
    assert system.dependents_of("Twin") == ("Hub", "Cache")


def test_compose_services(tmp_path: Path) -> None:
    path = write(tmp_path, "edge/docker-compose.yml", COMPOSE)
    system = load_system([ManifestSource(path)])
    assert system.machines == ("edge",)
    api = system.agents["api"]
    assert (api.script, api.port, api.health_check_port) == ("agents/api.py", 8000, 8001)
    assert (api.health, api.health_path) == (HealthCheck.HTTP, "/health")
    assert api.dependencies == ("db",)
    assert system.agents["worker"].script == "worker.py"
    assert system.agents["worker"].dependencies == ("api", "db")
    assert system.agents["db"].port == 5432


def test_machine_names_in_their_order(tmp_path: Path) -> None:
    keyed = write(tmp_path, "dir1/startup_config.other.yaml", "machine: gpu7\n" + LIST_SHAPE)
    middle = write(tmp_path, "dir2/startup_config.pc2.yaml", LIST_SHAPE)
    plain = write(tmp_path, "edgebox/services.yaml", LIST_SHAPE)

    def machine(source: ManifestSource) -> tuple[str, ...]:
        return load_system([source]).agents["Cache"].machines

    assert machine(parse_services_option(f"named={keyed}")) == ("named",)
    assert machine(ManifestSource(keyed)) == ("gpu7",)
    assert machine(ManifestSource(middle)) == ("pc2",)
    assert machine(ManifestSource(plain)) == ("edgebox",)


def test_services_option() -> None:
    assert parse_services_option("pc2=/x/y.yaml") == ManifestSource(Path("/x/y.yaml"), "pc2")
    assert parse_services_option("/x/y.yaml") == ManifestSource(Path("/x/y.yaml"), None)
    assert parse_services_option("/x/a=b.yaml") == ManifestSource(Path("/x/a=b.yaml"), None)


def test_manifest_that_does_not_parse_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "agent_groups:\n  core:\n    A: {port: 1\n  B: [\n")
    with pytest.raises(ConfigError) as caught:
        load_system([ManifestSource(path)])
    [problem] = caught.value.problems
    assert problem.file == str(path)
    assert problem.line == 4
    assert "does not parse" in problem.message


@pytest.mark.parametrize("text,line,words", [
    ("pc2_services:\n  - {name: A, port: 1}\n  - just a string\n", 3, "is not an agent"),
    ("pc2_services:\n  - {script_path: a.py, port: 1}\n", 2, "has no name"),
    ("agent_groups:\n  core:\n    A: {port: 7}\n    B: 12\n", 4, "B: is not an agent"),
    ("agent_groups:\n  core:\n    A: {port: not-a-port}\n", 3, "is not a port"),
    ("agent_groups:\n  core:\n    A: {port: 1, dependencies: 5}\n", 3, "list of agent names"),
    ("agent_groups: [1, 2]\n", 1, "agent_groups: must map"),
    ("name: nothing here\n", 1, "not a service manifest"),
    ("pc2_services:\n  - {name: A, port: 1}\n  - {name: A, port: 2}\n", 3, "declared twice"),
    ("agent_groups:\n  core:\n    A:\n      port: 1\n      dependencies:\n        - B\n"
     "        - A\n    B: {port: 2}\n", 7, "A: dependencies lists A itself"),
    ("pc2_services:\n  - name: A\n    port: 1\n    dependencies: A\n", 4,
     "A: dependencies lists A itself"),
    ("services:\n  web:\n    image: x\n    depends_on:\n      web: {condition: x}\n", 5,
     "web: depends_on lists web itself"),
    ("machine: [main, pc2]\npc2_services:\n  - {name: A, port: 1}\n", 1,
     "machine: ['main', 'pc2'] is not a machine name"),
    ("pc2_services:\n  - {name: A, port: 1}\nmachine: {name: main}\n", 3,
     "machine: {'name': 'main'} is not a machine name"),
    ("machine: true\npc2_services:\n  - {name: A, port: 1}\n", 1,
     "machine: True is not a machine name"),
    ("machine:\npc2_services:\n  - {name: A, port: 1}\n", 1,
     "machine: None is not a machine name"),
])
def test_entry_that_is_not_an_agent(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write(tmp_path, "m.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_system([ManifestSource(path)])
    assert [(p.file, p.line) for p in caught.value.problems] == [(str(path), line)]
    assert words in caught.value.problems[0].message


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_system([ManifestSource(tmp_path / "nope.yaml")])
    assert "cannot read" in str(caught.value)


def test_order_units_and_why() -> None:
    names = ["A", "B", "C", "D", "E", "F"]
    needs = {"B": ["A"], "C": ["B", "D"], "D": ["C"], "E": ["C"], "F": []}
    order = program_order(names, needs, migrated=["F"])
    assert [(s.step, s.agents) for s in order.steps] == [
        (1, ("A", "F")), (2, ("B",)), (3, ("C", "D")), (4, ("E",))]
    assert order.unit_of("D") == ("C", "D")
    assert order.unit_of("A") == ("A",)
    assert order.step_of("E") == 4
    assert order.steps[0].why == "needs nothing; 1 agent of later steps waits for it; already migrated: F"
    assert order.steps[2].why == ("waits for B (step 2); C, D need each other: migrated together; "
                                  "1 agent of later steps waits for it")
    assert order.steps[2].waits_for == ("B",)


def test_order_of_a_long_chain_is_not_recursive() -> None:
    names = [f"a{i}" for i in range(5000)]
    needs = {names[i]: [names[i - 1]] for i in range(1, len(names))}
    order = program_order(names, needs)
    assert len(order.steps) == 5000 and order.steps[-1].agents == ("a4999",)


def test_shared_manifests_76_agents_140_dependencies_order_respects_them() -> None:
    system = load_system([parse_services_option(f"main={SEED}/startup_config.main.yaml"),
                          parse_services_option(f"pc2={SEED}/startup_config.pc2.yaml")])
    assert len(system.agents) == 76
    assert system.machines == ("main", "pc2")
    assert sum(len(s.dependencies) for s in system.agents.values()) == 140
    assert len(system.edges()) == 140
    assert system.unknown == ()
    assert system.agents["ObservabilityHub"].machines == ("main", "pc2")
    order = order_of(system)
    assert sorted(order.agents()) == sorted(system.agents)
    for needer, needed in system.edges():
        same_unit = needed in order.unit_of(needer)
        assert order.step_of(needed) < order.step_of(needer) or same_unit, (needer, needed)
    assert order.unit_of("TTSService") == ("TTSService", "StreamingInterruptHandler",
                                           "StreamingTTSAgent")
    assert order.steps[0].agents == ("ServiceRegistry", "MemoryOrchestratorService")
