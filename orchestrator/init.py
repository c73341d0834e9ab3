"""`migrate init DIR --name NAME`: a new migration project from the template in the package.

The template (`orchestrator/templates/project/`, package data) is a tree of Jinja2
templates with square delimiters (`[[ var ]]`, `[% block %]`), so that the Ansible and
migrate templates inside the files (`{{ ... }}`) pass through untouched. Rendering
never reads the repository the package came from.

The sandbox (`inventory/sandbox.yml`, `playbooks/sandbox/*.yml` and the stand-in agent)
has one source: these templates. A project keeps the variables its own sandbox files
were rendered with in `sandbox/template.yaml`; `python -m orchestrator.init --refresh
DIR` renders them again (the ModelManagerAgent project at the repository root does),
and a test fails when the files differ from the rendering.
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from orchestrator._exceptions import ConfigError

TEMPLATE_PACKAGE = "orchestrator"
TEMPLATE_DIR = ("templates", "project")
VARS_FILE = "sandbox/template.yaml"
STANDIN = "sandbox/standin.py"
#: the files of the sandbox, shared by every project (the stand-in's name is a variable)
DEPENDENTS_STANDIN = "sandbox/dependents_standin.py"
SANDBOX_FILES = ("inventory/sandbox.yml", "playbooks/sandbox/provision.yml",
                 "playbooks/sandbox/teardown.yml", STANDIN, DEPENDENTS_STANDIN)
#: templates rendered only when the context has this variable set (the services form)
ONLY_WITH = {DEPENDENTS_STANDIN: "dependents", "rehearsals/dependent-outage.yaml": "dependents"}
RENAMED = {"dot-gitignore": ".gitignore"}
DEFAULT_HOSTS = ("main", "pc2")
SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
REVISION_KEYS = ("original", "phase2", "phase3")
DEFAULT_THREADS = {
    "original": ["memory-manager", "health-check", "request-handler", "vram-monitor",
                 "model-loader"],
    "phase2": ["memory-manager", "health-check", "request-handler", "model-loader"],
    "phase3": ["base-agent-lifecycle", "model-loader"],
}
#: sandbox ports: a block of PORT_BLOCK per project, chosen from its name, 10 per host
PORT_LOW, PORT_BLOCKS, PORT_BLOCK = 20000, 120, 100


@dataclass
class SandboxHost:
    name: str
    ports: dict[str, int]


@dataclass
class DependentStandin:
    """An agent that needs the migrated one, stood in for in the sandbox: it answers its
    health check on its own port (`VAR_port` of its machine) only while the agent serves
    what it needs."""

    name: str
    var: str  # snake case + `_health`: its trigger, its metric, `VAR_port` its port
    machine: str
    check: str = "tcp"  # or "http"
    path: str | None = None  # the HTTP health check's path

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "var": self.var, "machine": self.machine,
                               "check": self.check}
        if self.path:
            doc["path"] = self.path
        return doc


@dataclass
class TemplateVars:
    """Everything the templates read. The sandbox's part is stored in a project's
    `sandbox/template.yaml` so that its sandbox files can be rendered again."""

    name: str
    agent_display: str
    service: str
    standin_file: str
    program: str
    metric_prefix: str
    revision_vars: dict[str, str]
    threads: dict[str, list[str]]
    hosts: list[SandboxHost]
    agent: str | None = None
    #: the hosts that run the agent (a group `agent`); empty: every host does
    agent_hosts: list[str] = field(default_factory=list)
    dependents: list[DependentStandin] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        revisions = list(self.revision_vars.values())
        return {"name": self.name, "agent_display": self.agent_display,
                "service": self.service, "standin_file": self.standin_file,
                "standin_stem": Path(self.standin_file).stem, "program": self.program,
                "metric_prefix": self.metric_prefix, "revision_vars": self.revision_vars,
                "revisions": revisions, "threads": self.threads,
                "hosts": self.hosts, "first": (self.agent_hosts or [self.hosts[0].name])[0],
                "agent": self.agent, "agent_hosts": self.agent_hosts,
                "run_hosts": "agent" if self.agent_hosts else "all",
                "probe_hosts": [h.name for h in self.hosts
                                if any(d.machine == h.name for d in self.dependents)],
                "dependents": self.dependents, "outage": self.outage(),
                "requires": [], "real_ports": {}, **self.extra}

    def outage(self) -> DependentStandin | None:
        """The dependent the `dependent-outage` drill breaks: one on another machine than
        the agent's when there is one (the cross-machine case), else the first."""
        away = [d for d in self.dependents if d.machine not in self.agent_hosts]
        return (away or self.dependents)[0] if self.dependents else None

    def sandbox_document(self) -> dict[str, Any]:
        return {"name": self.name, "agent_display": self.agent_display,
                "service": self.service, "standin_file": self.standin_file,
                "metric_prefix": self.metric_prefix, "revisions": self.revision_vars,
                "threads": self.threads,
                "hosts": [{"name": h.name, "ports": h.ports} for h in self.hosts],
                **({"agent_hosts": self.agent_hosts} if self.agent_hosts else {}),
                **({"dependents": [d.document() for d in self.dependents]}
                   if self.dependents else {})}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> TemplateVars:
        return cls(name=str(doc["name"]), agent_display=str(doc["agent_display"]),
                   service=str(doc["service"]), standin_file=str(doc["standin_file"]),
                   program=str(doc.get("program", doc["standin_file"])),
                   metric_prefix=str(doc["metric_prefix"]),
                   revision_vars={str(k): str(v) for k, v in doc["revisions"].items()},
                   threads={str(k): [str(t) for t in v] for k, v in doc["threads"].items()},
                   hosts=[SandboxHost(str(h["name"]), {str(k): int(v) for k, v in
                                                        h["ports"].items()})
                          for h in doc["hosts"]],
                   agent_hosts=[str(h) for h in doc.get("agent_hosts") or []],
                   dependents=[DependentStandin(str(d["name"]), str(d["var"]),
                                                str(d["machine"]), str(d.get("check", "tcp")),
                                                d.get("path"))
                               for d in doc.get("dependents") or []])


def default_vars(name: str, hosts: list[str], agent: str | None = None,
                 port_base: int | None = None) -> TemplateVars:
    """The variables of a new project: names from its slug, ports from a block of its own."""
    words = name.split("-")
    under = "_".join(words)
    if port_base is None:
        port_base = PORT_LOW + zlib.crc32(name.encode()) % PORT_BLOCKS * PORT_BLOCK
    sandbox_hosts = []
    for i, host in enumerate(hosts):
        base = port_base + 10 * i
        sandbox_hosts.append(SandboxHost(host, {"health_port": base + 1,
                                                "dcgm_exporter_port": base + 1,
                                                "test_instance_port": base + 2}))
    return TemplateVars(
        name=name, agent_display="".join(w.capitalize() for w in words), service=name,
        standin_file=f"{under}_standin.py",
        program=Path(agent).name if agent and agent.endswith(".py") else f"{under}.py",
        metric_prefix=under, revision_vars={k: k for k in REVISION_KEYS},
        threads={k: list(v) for k, v in DEFAULT_THREADS.items()}, hosts=sandbox_hosts,
        agent=agent)


# --- rendering -------------------------------------------------------------------------------
def _pyrepr(value: Any) -> str:
    return repr(value).replace("'", '"')


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(variable_start_string="[[", variable_end_string="]]",
                             block_start_string="[%", block_end_string="%]",
                             comment_start_string="[#", comment_end_string="#]",
                             keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined,
                             autoescape=False)  # noqa: S701 - YAML and Python, not HTML
    env.filters["pyrepr"] = _pyrepr
    env.filters["pylist"] = _pyrepr
    return env


def template_files() -> dict[str, str]:
    """Every template of the project tree: relative path -> its text."""
    root = resources.files(TEMPLATE_PACKAGE).joinpath(*TEMPLATE_DIR)
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, rel + "/")
            elif not child.name.endswith((".pyc", ".pyo")):
                out[rel] = child.read_text(encoding="utf-8")

    walk(root, "")
    return dict(sorted(out.items()))


def _target(rel: str, variables: TemplateVars) -> str:
    if rel == STANDIN:
        return f"sandbox/{variables.standin_file}"
    head, _, name = rel.rpartition("/")
    name = RENAMED.get(name, name)
    return f"{head}/{name}" if head else name


def render(variables: TemplateVars, only: tuple[str, ...] | None = None) -> dict[str, str]:
    """The project's files as text, by the path they take in the project."""
    env = _environment()
    context = variables.context()
    out = {}
    for rel, text in template_files().items():
        if only is not None and rel not in only:
            continue
        if rel in ONLY_WITH and not context.get(ONLY_WITH[rel]):
            continue
        if not any(mark in text for mark in ("[[", "[%", "[#")):
            out[_target(rel, variables)] = text  # nothing to render: no template to compile
            continue
        out[_target(rel, variables)] = env.from_string(text).render(context)
    return out


def render_sandbox(variables: TemplateVars) -> dict[str, str]:
    return render(variables, SANDBOX_FILES)


def read_vars(project: Path) -> TemplateVars:
    import yaml

    path = project / VARS_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        return TemplateVars.from_document(doc)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{path}: not the variables of a sandbox rendering ({exc})") from exc


def _vars_text(variables: TemplateVars) -> str:
    import yaml

    head = ("# The variables this project's sandbox files (inventory/sandbox.yml,\n"
            "# playbooks/sandbox/*.yml and the stand-in agent) are rendered with, from\n"
            "# migrate's project template. Change a value, then render them again with\n"
            "#   python -m orchestrator.init --refresh .\n")
    return head + yaml.safe_dump(variables.sandbox_document(), sort_keys=False,
                                 default_flow_style=None, width=100)


def stale_sandbox_files(project: Path) -> list[str]:
    """Sandbox files of the project that differ from the template's rendering."""
    rendered = render_sandbox(read_vars(project))
    return [rel for rel, text in rendered.items()
            if not (project / rel).is_file()
            or (project / rel).read_text(encoding="utf-8") != text]


def refresh_sandbox(project: Path) -> list[str]:
    """Render the project's sandbox files again from its `sandbox/template.yaml`."""
    written = []
    for rel, text in render_sandbox(read_vars(project)).items():
        path = project / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if rel.endswith(".py"):
                path.chmod(0o755)
            written.append(rel)
    return written


# --- init ------------------------------------------------------------------------------------
@dataclass
class InitResult:
    directory: Path
    written: list[str]
    next_commands: list[str]
    notes: list[str] = field(default_factory=list)
    name: str = ""


def check_arguments(directory: Path, name: str, hosts: list[str]) -> None:
    """Refuse (ConfigError, exit 2) before anything is written."""
    if not SLUG.match(name):
        raise ConfigError(f"--name {name!r} is not a slug: lowercase letters, digits and "
                          "single hyphens, starting with a letter (e.g. tutoring-agent)")
    bad = [h for h in hosts if not HOST_NAME.match(h) or h == "all"]
    if bad:
        raise ConfigError(f"--host {', '.join(repr(h) for h in bad)}: not an inventory host "
                          "name (letters, digits, '_', '.', '@', '-'; not 'all')")
    dupes = sorted({h for h in hosts if hosts.count(h) > 1})
    if dupes:
        raise ConfigError(f"--host {', '.join(dupes)} given twice")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} exists and is not a directory; nothing written")
    if directory.is_dir() and any(directory.iterdir()):
        raise ConfigError(f"{directory} exists and is not empty; nothing written (init "
                          "starts a new project: give a new or empty directory)")


def init_project(directory: Path, name: str, hosts: list[str] | tuple[str, ...] = (),
                 agent: str | None = None, port_base: int | None = None) -> InitResult:
    host_list = list(hosts) or list(DEFAULT_HOSTS)
    check_arguments(directory, name, host_list)
    agent_text = None
    analysis_md = None
    if agent is not None:
        agent_path = Path(agent).expanduser()
        if not agent_path.exists():
            raise ConfigError(f"--agent {agent}: no such file or directory; nothing written")
        agent_text = str(agent_path.resolve())
        analysis_md = analysis_markdown(agent_path.resolve(), name)
    variables = default_vars(name, host_list, agent_text, port_base)
    result = write_project(directory, variables, analysis_md)
    where = str(directory)
    result.next_commands = [f"cd {where}", "migrate validate",
                            "migrate rehearse --scenario clean",
                            "migrate rehearse --scenario vram-leak",
                            f"$EDITOR inventory/hosts.yml   # the real addresses of "
                            f"{', '.join(host_list)}",
                            f"migrate plan 1 --host {host_list[0]}"]
    return result


def write_project(directory: Path, variables: TemplateVars,
                  analysis_md: str | None = None) -> InitResult:
    """Render the template with `variables` and write it (the arguments are checked)."""
    files = render(variables)
    files[VARS_FILE] = _vars_text(variables)
    if analysis_md is not None:
        files["ANALYSIS.md"] = analysis_md
    directory.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if rel.endswith(".py"):
            path.chmod(0o755)
    return InitResult(directory, sorted(files), [], name=variables.name)


def analysis_markdown(path: Path, name: str, program: list[str] | None = None) -> str:
    """ANALYSIS.md: the agent's place in the program (`program`, Markdown lines, when it
    was planned from the manifests), the sites of the agent that the migration must
    change (the worklist of `migrate analyze --worklist`), then its risk report
    (`migrate analyze --format md`)."""
    from orchestrator.analysis import analyze_path, render_markdown

    result = analyze_path(path)
    lines = [f"# Analysis of {path.name} for the {name} migration", "",
             f"Source: `{path}` (read, never imported or run). Written by `migrate init`; "
             f"again with `migrate analyze {path} --worklist --format md`.", ""]
    lines += program or []
    try:
        from orchestrator.analysis.render import worklist_of
    except ImportError:  # a migrate without --worklist: the risk report alone
        lines += ["(This version of migrate has no `analyze --worklist`.)", ""]
    else:
        work = render_markdown(worklist_of(result)).strip().splitlines()
        if work and work[0].startswith("# "):
            work[0] = "## Worklist: " + work[0][2:].lower()
        lines += work + [""]
    risk = render_markdown(result).strip().splitlines()
    lines += ["## Risk", ""] + [("#" + line if line.startswith("#") else line)
                                for line in risk] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.init")
    parser.add_argument("--refresh", type=Path, metavar="PROJECT", required=True,
                        help="render PROJECT's sandbox files again from sandbox/template.yaml")
    parser.add_argument("--check", action="store_true",
                        help="only say which files differ (exit 1 when any does)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_sandbox_files(args.refresh)
        for rel in stale:
            print(f"differs from the template: {rel}")
        return 1 if stale else 0
    for rel in refresh_sandbox(args.refresh):
        print(f"rendered {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
