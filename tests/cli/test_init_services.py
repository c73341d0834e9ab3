"""`migrate init DIR --agent NAME --services FILE...`: the migration of one agent of the
program, planned from the system's manifests: its dependents watched from their own
machines, its unmigrated dependencies required first (not those of its own unit), a
sandbox with a stand-in per dependent and a `dependent-outage` drill that passes.

Two systems: the shared manifests (read from ../shared/seed, never copied; the agents'
scripts written in a temp --source), and the small one in tests/fixtures/init_system,
whose dependents sit on both machines and whose scripts are there."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.init import stale_sandbox_files
from orchestrator.init_services import kebab, snake
from tests.support.agent_sources import SEED as SEED_AGENT
from tests.support.init_drills import failed, free_port_base, teardown

ROOT = Path(__file__).resolve().parents[2]
SEED = SEED_AGENT.parent  # ../shared/seed, found above a worktree too
MAIN = SEED / "startup_config.main.yaml"
PC2 = SEED / "startup_config.pc2.yaml"
SHARED = ["--services", f"main={MAIN}", "--services", f"pc2={PC2}"]
FIXTURE = ROOT / "tests" / "fixtures" / "init_system"
SMALL = ["--services", str(FIXTURE / "startup_config.main.yaml"),
         "--services", str(FIXTURE / "startup_config.pc2.yaml"),
         "--source", str(FIXTURE / "src")]

NOT_MIGRATED = """\
import threading
import zmq


class Agent:
    def __init__(self, port=5562):
        self.socket = zmq.Context().socket(zmq.REP)
        self.socket.bind(f"tcp://*:{port}")
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        pass
"""
MIGRATED = """\
from common.core.base_agent import BaseAgent


class Agent(BaseAgent):
    def __init__(self, port=7220):
        super().__init__(name="Agent", port=port)
"""


def migrate(*args: str, cwd: Path | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                         text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


def shared_source(tmp: Path) -> Path:
    """A checkout of the system with StreamingTTSAgent's script (not migrated) and
    SystemDigitalTwin's (migrated); every other script is missing (not migrated)."""
    src = tmp / "src"
    for rel, text in (("main_pc_code/agents/streaming_tts_agent.py", NOT_MIGRATED),
                      ("main_pc_code/agents/system_digital_twin.py", MIGRATED),
                      ("pc2_code/agents/resource_manager.py", NOT_MIGRATED)):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    return src


def load(project: Path, rel: str) -> dict[str, object]:
    doc = yaml.safe_load((project / rel).read_text())
    assert isinstance(doc, dict)
    return doc


def test_names_from_agent_names() -> None:
    assert kebab("StreamingTTSAgent") == "streaming-tts-agent"
    assert kebab("TTSService") == "tts-service"
    assert kebab("NLUAgent") == "nlu-agent"
    assert kebab("EmpathyAgent") == "empathy-agent"
    assert kebab("VisionProcessingAgent") == "vision-processing-agent"
    assert snake("StreamingInterruptHandler") == "streaming_interrupt_handler"


def test_init_of_an_agent_of_the_shared_manifests(tmp_path: Path) -> None:
    """StreamingTTSAgent: three dependents on main, each watched; RequestCoordinator and
    UnifiedSystemAgent required (no script: not migrated), SystemDigitalTwin not (its
    script is migrated), TTSService not (same unit)."""
    project = tmp_path / "p"
    res = migrate("init", str(project), "--agent", "StreamingTTSAgent", *SHARED,
                  "--source", str(shared_source(tmp_path)))
    assert res.returncode == 0, res.stderr
    assert "migration streaming-tts-agent written" in res.stdout
    doc = load(project, "migration.yaml")
    assert doc["name"] == "streaming-tts-agent"
    assert doc["agent"] == str(tmp_path / "src/main_pc_code/agents/streaming_tts_agent.py")
    assert doc["metrics"]["migration_risk"]["source"] == "analyze"  # type: ignore[index]
    triggers = doc["triggers"]
    metrics = doc["metrics"]
    assert isinstance(triggers, dict) and isinstance(metrics, dict)
    watched = {"responder_health": 6637, "streaming_interrupt_handler_health": 6576,
               "empathy_agent_health": 6703}
    assert {t for t in triggers if t.endswith("_health")} == set(watched)
    hosts = load(project, "inventory/hosts.yml")["all"]
    for trigger, port in watched.items():
        assert triggers[trigger] == {"metric": trigger, "failing": True, "for": "1m"}
        metric = metrics[trigger]
        assert metric["source"] == "tcp" and metric["from"] == "main"
        assert f'hostvars["main"].{trigger}_port' in metric["address"]
        assert hosts["hosts"]["main"][f"{trigger}_port"] == port  # type: ignore[index]
    assert hosts["hosts"]["main"]["health_port"] == 6562  # type: ignore[index]
    assert hosts["hosts"]["main"]["zmq_port"] == 5562  # type: ignore[index]
    assert list(hosts["children"]["agent"]["hosts"]) == ["main"]  # type: ignore[index]
    for phase in sorted((project / "phases").glob("*.yaml")):
        assert set(watched) <= set(load(project, f"phases/{phase.name}")["triggers"])  # type: ignore[arg-type]
    phase1 = load(project, "phases/1-infrastructure.yaml")
    assert phase1["requires"] == [
        {"migration": "request-coordinator", "phase": 4, "observed": "24h"},
        {"migration": "unified-system-agent", "phase": 4, "observed": "24h"}]
    analysis = (project / "ANALYSIS.md").read_text()
    assert "**Migrate together:** TTSService, StreamingInterruptHandler, StreamingTTSAgent" \
        in analysis
    assert "| TTSService | main | no (main_pc_code/services/tts_service.py not under " \
        "--source) | nothing: same unit, migrated together |" in analysis
    assert "| SystemDigitalTwin | main | yes (0 sockets, 0 threads of its own) | nothing: " \
        "already migrated |" in analysis
    assert "| socket |" in analysis or " socket " in analysis  # the worklist, as today
    assert stale_sandbox_files(project) == []
    res = migrate("--project", str(project), "validate")
    assert res.returncode == 0, res.stderr
    res = migrate("--project", str(project), "rehearse", "--list")
    assert [line.split()[0] for line in res.stdout.splitlines()] == [
        "clean", "dependent-outage", "vram-leak"]


def test_a_dependency_on_another_machine_is_required_with_its_host(tmp_path: Path) -> None:
    """ResourceManager (pc2) needs ObservabilityHub, which runs on main and pc2: phase 4
    of observability-hub is required on main (host: main) and on pc2 (the same host)."""
    project = tmp_path / "rm"
    res = migrate("init", str(project), "--agent", "ResourceManager", *SHARED,
                  "--source", str(shared_source(tmp_path)), "--name", "resource-manager-2")
    assert res.returncode == 0, res.stderr
    assert load(project, "migration.yaml")["name"] == "resource-manager-2"
    assert load(project, "phases/1-infrastructure.yaml")["requires"] == [
        {"migration": "observability-hub", "phase": 4, "host": "main", "observed": "24h"},
        {"migration": "observability-hub", "phase": 4, "observed": "24h"}]
    assert migrate("--project", str(project), "validate").returncode == 0


def test_the_fixture_system_probes_each_dependent_from_its_own_machine(
        tmp_path: Path) -> None:
    project = tmp_path / "speech"
    res = migrate("init", str(project), "--agent", "SpeechAgent", *SMALL)
    assert res.returncode == 0, res.stderr
    doc = load(project, "migration.yaml")
    metrics = doc["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["phonemes_health"]["from"] == "main"
    assert metrics["dashboard_health"]["from"] == "pc2"
    assert metrics["dashboard_health"]["source"] == "tcp"
    tutor = metrics["tutor_agent_health"]  # the manifest says http: an HTTP GET from pc2
    assert tutor["from"] == "pc2" and tutor["source"] == "http"
    assert tutor["url"].endswith('hostvars["pc2"].tutor_agent_health_port }}/health')
    hosts = load(project, "inventory/hosts.yml")["all"]
    assert list(hosts["children"]["agent"]["hosts"]) == ["main"]  # type: ignore[index]
    assert list(hosts["children"]["dependents"]["hosts"]) == ["main", "pc2"]  # type: ignore[index]
    assert hosts["hosts"]["pc2"] == {"ansible_host": "192.0.2.11",  # type: ignore[index]
                                     "dashboard_health_port": 8150,
                                     "tutor_agent_health_port": 8160}
    # Hub is migrated, Phonemes in SpeechAgent's unit: neither required
    assert load(project, "phases/1-infrastructure.yaml")["requires"] == [
        {"migration": "memory-store", "phase": 4, "host": "pc2", "observed": "24h"},
        {"migration": "lexicon", "phase": 4, "observed": "24h"}]
    outage = load(project, "rehearsals/dependent-outage.yaml")
    assert outage["expect"]["fired"] == {"trigger": "dashboard_health",  # type: ignore[index]
                                         "host": "main"}
    assert "**Migrate together:** SpeechAgent, Phonemes" in (project / "ANALYSIS.md").read_text()


def test_a_dependent_whose_trigger_name_is_taken_gets_another(tmp_path: Path) -> None:
    """An agent named `Agent` would make `agent_health`, the template's own metric."""
    manifest = tmp_path / "startup_config.main.yaml"
    manifest.write_text("agent_groups:\n  g:\n"
                        "    Core: {script_path: core.py, port: 7000, dependencies: []}\n"
                        "    Agent: {script_path: a.py, port: 7001, health_check_port: 8001,"
                        " dependencies: [Core]}\n")
    (tmp_path / "core.py").write_text(MIGRATED)
    project = tmp_path / "core"
    res = migrate("init", str(project), "--agent", "Core", "--services", str(manifest),
                  "--source", str(tmp_path))
    assert res.returncode == 0, res.stderr
    doc = load(project, "migration.yaml")
    assert doc["triggers"]["dependent_agent_1_health"] == {  # type: ignore[index]
        "metric": "dependent_agent_1_health", "failing": True, "for": "1m"}
    assert doc["metrics"]["agent_health"]["source"] == "http"  # type: ignore[index]
    assert migrate("--project", str(project), "validate").returncode == 0


def test_an_unknown_agent_exits_2_with_the_closest_names(tmp_path: Path) -> None:
    project = tmp_path / "p"
    res = migrate("init", str(project), "--agent", "StreamingTTSAgnet", *SHARED)
    assert res.returncode == 2
    assert "StreamingTTSAgnet" in res.stderr and "StreamingTTSAgent" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not project.exists()


def test_a_non_empty_directory_or_a_bad_manifest_exits_2_and_writes_nothing(
        tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine\n")
    res = migrate("init", str(busy), "--agent", "SpeechAgent", *SMALL)
    assert res.returncode == 2 and "not empty" in res.stderr
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]

    bad = tmp_path / "startup_config.main.yaml"
    bad.write_text("agent_groups:\n  core:\n    Hub: [1, 2\n")
    res = migrate("init", str(tmp_path / "p"), "--agent", "Hub", "--services", str(bad))
    assert res.returncode == 2
    assert f"{bad}:3" in res.stderr or f"{bad}:4" in res.stderr, res.stderr
    assert not (tmp_path / "p").exists()

    res = migrate("init", str(tmp_path / "p"), "--agent", "SpeechAgent", *SMALL[:4],
                  "--source", str(tmp_path))  # the agent's script is not there
    assert res.returncode == 2 and "agents/speech_agent.py" in res.stderr
    assert not (tmp_path / "p").exists()


def test_the_dependents_stand_ins_answer_only_while_the_agent_serves_them(
        tmp_path: Path) -> None:
    """The rendered sandbox/dependents_standin.py, against an agent's greeting on its port:
    a greeting that refuses a dependent closes that one's tcp health port (or makes its
    http check 503) at once, and opens it again when the agent serves it again."""
    import socket
    import threading
    import urllib.error
    import urllib.request

    project = tmp_path / "speech"
    assert migrate("init", str(project), "--agent", "SpeechAgent", *SMALL).returncode == 0
    refuses: list[str] = []
    agent = socket.socket()
    agent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    agent.bind(("127.0.0.1", 0))
    agent.listen(16)

    def greet() -> None:
        while True:
            try:
                conn, _ = agent.accept()
            except OSError:
                return
            conn.sendall((json.dumps({"agent": "SpeechAgent", "revision": "r",
                                      "refuses": list(refuses)}) + "\n").encode())
            conn.close()

    threading.Thread(target=greet, daemon=True).start()
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "needs": [f"127.0.0.1:{agent.getsockname()[1]}"], "state_dir": str(tmp_path / "run"),
        "dependents": [{"name": "Dashboard", "port": str(ports[0]), "check": "tcp"},
                       {"name": "TutorAgent", "port": ports[1], "check": "http",
                        "path": "/health"}]}))
    proc = subprocess.Popen([sys.executable, str(project / "sandbox/dependents_standin.py"),
                             "serve", "--config", str(config)], stdout=subprocess.PIPE,
                            text=True)

    def tcp_up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
            return True
        except OSError:
            return False

    def http_code() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/health", timeout=1) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def until(what: object, want: object) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if what() == want:  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} never became {want}")

    try:
        until(tcp_up, True)
        until(http_code, 200)
        refuses.append("Dashboard")
        until(tcp_up, False)
        assert http_code() == 200  # TutorAgent is still served
        refuses[:] = ["TutorAgent"]
        until(tcp_up, True)
        until(http_code, 503)
        refuses.clear()
        until(http_code, 200)
    finally:
        config.unlink()  # the stand-in stops once its config is gone
        agent.close()
        out, _ = proc.communicate(timeout=10)
    assert "Dashboard: unhealthy: SpeechAgent at revision r no longer serves Dashboard" in out


def test_an_http_health_check_is_made_on_the_from_host() -> None:
    """`http` with `from:` a host that is not local: the GET runs there through the command
    runner (here the local one, standing in for SSH), so what that host sees is read."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from orchestrator.config.inventory import Host
    from orchestrator.core.model import Metric, MetricKind
    from orchestrator.metrics.sources.base import ReadContext, read_metric
    from orchestrator.runners.local import LocalCommandRunner

    answers = {"/health": (200, b'{"status": "ok"}'), "/sick": (503, b'{"status": "error"}')}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            code, body = answers.get(self.path, (404, b"{}"))
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    pc2 = Host("pc2", {"ansible_host": "127.0.0.1"})  # an SSH host, not a local one
    main = Host("main", {"ansible_connection": "local"})
    runner = LocalCommandRunner()
    seen: list[str] = []

    class Recording:
        def run_command(self, request: object, cancel: object) -> object:
            seen.append(request.host.name)  # type: ignore[attr-defined]
            return runner.run_command(request, cancel)  # type: ignore[arg-type]

    def read(path: str, origin: str = "pc2") -> tuple[object, str | None]:
        metric = Metric("h", "http", MetricKind.PASSFAIL,
                        {"url": f"http://127.0.0.1:{port}{path}", "expect": {"status": "ok"},
                         "from": origin}, "skip", 120.0, None, 1)
        ctx = ReadContext(host=main, hostvars={}, phase=None, run_id=None, elapsed=0.0,
                          timeout=5.0, commands=Recording(),  # type: ignore[arg-type]
                          hosts={"main": main, "pc2": pc2})
        reading = read_metric(metric, ctx)
        return reading.value, reading.error

    try:
        assert read("/health")[0] == 1.0
        assert seen == ["pc2"]
        value, why = read("/sick")
        assert value == 0.0 and "503" in str(why)
        assert read("/health", "main")[0] == 1.0 and seen == ["pc2", "pc2"]  # local: here
        assert read("/health", "pc3") == (0.0, "from: unknown host 'pc3'")
    finally:
        server.shutdown()


# --- slow: the drills of a fresh project, real ansible-playbook on the local sandbox ----------
def rehearse(project: Path, scenario: str) -> tuple[int, dict[str, object], str, float]:
    started = time.monotonic()
    res = migrate("--project", str(project), "--output", "json", "rehearse", "--scenario",
                  scenario)
    seconds = time.monotonic() - started
    assert res.stdout, res.stderr[-3000:]
    return res.returncode, json.loads(res.stdout), res.stderr, seconds


@pytest.mark.integration
def test_validate_then_the_dependent_outage_and_clean_drills_pass(tmp_path: Path) -> None:
    project = tmp_path / "speech"
    res = migrate("init", str(project), "--agent", "SpeechAgent", *SMALL,
                  "--sandbox-ports", str(free_port_base(2, extra=3)))
    assert res.returncode == 0, res.stderr
    assert migrate("--project", str(project), "validate").returncode == 0
    try:
        code, doc, err, seconds = rehearse(project, "dependent-outage")
        assert doc["passed"] is True, (failed(doc), err[-3000:])
        assert code == 0
        print(f"dependent-outage drill: {seconds:.1f}s")
        fired = [c["what"] for c in doc["checks"]]  # type: ignore[attr-defined,index]
        assert any("dashboard_health" in str(w) for w in fired), fired
        assert "no longer serves Dashboard" in (
            project / ".migrate/sandbox/pc2/run/dependents.pid.log").read_text()
        code, doc, err, seconds = rehearse(project, "clean")
        assert doc["passed"] is True, (failed(doc), err[-3000:])
        assert code == 0
        print(f"clean drill: {seconds:.1f}s")
    finally:
        teardown(project)
