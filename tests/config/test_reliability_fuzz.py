"""Fuzzed project files: every broken file is a clean FILE:LINE problem, exit 2, and nothing
runs or is written.

Each case copies the real project (this repository's migration.yaml, phases/,
inventory/hosts.yml, playbooks/, rollback/), breaks one file with a seeded mutation and
runs `migrate validate` and `migrate phase 1 --host main` in-process (through `cli.main`,
as the `migrate` script does; about 50 ms a call instead of a second). Every mutation is
broken by construction, never by asking migrate: bytes that are not UTF-8, characters
YAML forbids (C0 controls, DEL), bit flips that make one of those, truncation inside a
quoted scalar or flow collection (or down to no document), a value of the wrong type at a
key the SPEC types, and a misspelt key where only known keys are allowed.

"Nothing runs": the runners and every metric source are replaced by recorders for the
test, so a call to any of them fails the case. "Nothing written": no `.migrate` appears.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SEED = 20261
CASES = 240
PROJECT_PARTS = ("migration.yaml", "phases", "inventory", "playbooks", "rollback")

_DOC_KEYS: dict[str, set[str]] = {
    "top": {"name", "inventory", "poll_interval", "prometheus", "metrics", "triggers", "notify",
            "description", "ssh", "defaults", "forks", "alertmanager"},
    "metric": {"source", "nodata", "nodata_alert", "timeout", "description", "query", "url",
               "series", "field", "gpu", "pid_file", "expect", "address", "from", "command",
               "parse", "values"},
    "trigger": {"metric", "direction", "for", "action", "baseline", "description", "above",
                "below", "degrade_pct", "increase", "failing", "alert", "match", "host_label"},
    "phase": {"phase", "name", "requires", "triggers", "bake", "preconditions", "steps",
              "serial", "description", "waves", "max_failed", "on_fire"},
    "step": {"id", "name", "rollback", "rollback_command", "timeout", "retries", "hosts",
             "description", "duration", "playbook", "command", "check", "wait", "pause",
             "baseline"},
    "group": {"hosts", "children", "vars"},
}

# (path pattern, wrong values): "*" is any mapping key, "#" any list index
_TYPED: dict[str, list[tuple[tuple[str, ...], list[str]]]] = {
    "migration": [
        (("name",), ["[x]", "{a: 1}", "''", "7"]),
        (("inventory",), ["[hosts.yml]", "7", "''"]),
        (("poll_interval",), ["5", "[5s]", "true", "0s", "soon"]),
        (("prometheus",), ["[http://x]", "7"]),
        (("prometheus", "url"), ["[x]", "''"]),
        (("metrics",), ["[a]", "7", "{}"]),
        (("metrics", "*"), ["7", "[x]"]),
        (("metrics", "*", "source"), ["nosuch", "[exporter]", "7"]),
        (("metrics", "*", "timeout"), ["2", "[2s]", "fast"]),
        (("metrics", "*", "expect"), ["ok", "[ok]"]),
        (("triggers",), ["[x]", "7", "{}"]),
        (("triggers", "*"), ["7", "[x]"]),
        (("triggers", "*", "metric"), ["nosuch", "[x]", "7"]),
        (("triggers", "*", "increase"), ["lots", "[1]", "true"]),
        (("triggers", "*", "degrade_pct"), ["lots", "[1]", "0", "-5"]),
        (("triggers", "*", "failing"), ["false", "1", "[true]"]),
        (("triggers", "*", "for"), ["5", "[1m]", "soon"]),
        (("triggers", "*", "direction"), ["sideways", "[up]"]),
        (("triggers", "*", "baseline"), ["[x]", "''", "7"]),
    ],
    "phase": [
        (("phase",), ["'one'", "[1]", "99"]),
        (("name",), ["[x]", "7"]),
        (("requires",), ["one", "[x]", "[99]"]),
        (("triggers",), ["[nosuch]", "7"]),
        (("preconditions",), ["[nosuch]", "7"]),
        (("bake",), ["2", "[2m]"]),
        (("steps",), ["[]", "{}", "7"]),
        (("steps", "#"), ["7", "[x]"]),
        (("steps", "#", "id"), ["[x]", "'a b'", "7"]),
        (("steps", "#", "timeout"), ["10", "[10m]", "later"]),
        (("steps", "#", "playbook"), ["[x]", "7", "playbooks/nosuch.yml", "''"]),
        (("steps", "#", "rollback"), ["[x]", "7", "rollback/nosuch.yml"]),
        (("steps", "#", "rollback_command"), ["[x]", "''"]),
        (("steps", "#", "command"), ["[x]", "7"]),
        (("steps", "#", "hosts"), ["[]", "main", "[nosuch]"]),
        (("steps", "#", "wait"), ["5", "[5s]"]),
        (("steps", "#", "check"), ["nosuch", "[x]"]),
        (("steps", "#", "duration"), ["30", "[30s]"]),
    ],
    "inventory": [
        (("all",), ["[x]", "7"]),
        (("all", "vars"), ["[x]", "7"]),
        (("all", "hosts"), ["[main]", "7", "{}"]),
        (("all", "hosts", "*"), ["[x]", "7"]),
    ],
}


@dataclass(frozen=True)
class Case:
    file: str  # relative path of the broken file
    kind: str
    data: bytes
    note: str


def _files() -> list[str]:
    phases = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "phases").glob("*.yaml"))
    return ["migration.yaml", *phases, "inventory/hosts.yml"]


def _doc_kind(rel: str) -> str:
    return "migration" if rel == "migration.yaml" else \
        "inventory" if rel.startswith("inventory/") else "phase"


def _walk(node: yaml.Node, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...],
                                                                          yaml.Node,
                                                                          yaml.Node | None]]:
    """(path, value node, key node) of every node of a composed document."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            yield sub, value, key
            yield from _walk(value, sub)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, i)
            yield sub, item, None
            yield from _walk(item, sub)


def _matches(pattern: tuple[str, ...], path: tuple[Any, ...]) -> bool:
    if len(pattern) != len(path):
        return False
    for want, got in zip(pattern, path, strict=True):
        if want == "*" and isinstance(got, str):
            continue
        if want == "#" and isinstance(got, int):
            continue
        if want != got:
            return False
    return True


def _key_vocabulary(kind: str, path: tuple[Any, ...]) -> set[str] | None:
    """The closed set of keys allowed at `path` (whose last element is a key), or None
    where names are free (metric, trigger, host and variable names)."""
    parent = path[:-1]
    if kind == "migration":
        if not parent:
            return _DOC_KEYS["top"]
        if len(parent) == 2 and parent[0] == "metrics":
            return _DOC_KEYS["metric"]
        if len(parent) == 2 and parent[0] == "triggers":
            return _DOC_KEYS["trigger"]
        return None
    if kind == "phase":
        if not parent:
            return _DOC_KEYS["phase"]
        if len(parent) == 2 and parent[0] == "steps":
            return _DOC_KEYS["step"]
        return None
    if len(parent) == 1 or (len(parent) >= 3 and parent[-2] == "children"):
        return _DOC_KEYS["group"]  # the keys of a group's body
    return None


def _span(text: str, node: yaml.Node) -> tuple[int, int]:
    start = len(text[:node.start_mark.index].encode())
    end = len(text[:node.end_mark.index].encode())
    return start, end


def _typo(rng: random.Random, key: str, forbidden: set[str]) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz_"
    while True:
        how = rng.randrange(4)
        i = rng.randrange(len(key))
        if how == 0:
            cand = key[:i] + rng.choice(letters) + key[i:]
        elif how == 1 and len(key) > 2:
            cand = key[:i] + key[i + 1:]
        elif how == 2 and len(key) > 2 and i < len(key) - 1 and key[i] != key[i + 1]:
            cand = key[:i] + key[i + 1] + key[i] + key[i + 2:]
        else:
            cand = key + rng.choice(["s", "_x", "2"])
        if cand and cand not in forbidden and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cand):
            return cand


def _is_broken_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return bool(re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text))


def make_case(index: int) -> Case:
    rng = random.Random(SEED * 100_000 + index)
    files = _files()
    rel = files[rng.randrange(len(files))]
    raw = (REPO / rel).read_bytes()
    text = raw.decode("utf-8")
    kind = ["non_utf8", "non_utf8", "control", "flip", "truncate", "truncate", "type_swap",
            "type_swap", "type_swap", "wrong_key", "wrong_key"][rng.randrange(11)]
    if kind == "non_utf8":
        bad = rng.choice([b"\xff", b"\xfe", b"\xc3", b"\x80", b"\xe9", b"\xed\xa0\x80",
                          b"\xf8\x88\x80\x80\x80", b"\xc0\xaf", b"\xbf\xbf"])
        at = rng.randrange(len(raw) + 1)
        data = raw[:at] + bad + raw[at:] if rng.random() < 0.7 else \
            raw[:at] + bad + raw[at + 1:]
        assert _is_broken_text(data)
        return Case(rel, kind, data, f"{bad!r} at byte {at}")
    if kind == "control":
        ch = rng.choice([*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x00])
        at = rng.randrange(len(raw) + 1)
        data = raw[:at] + bytes([ch]) + raw[at:]
        return Case(rel, kind, data, f"0x{ch:02x} at byte {at}")
    if kind == "flip":
        while True:
            at = rng.randrange(len(raw))
            byte = raw[at]
            flipped = byte ^ 0x80 if rng.random() < 0.5 else byte & 0x1F
            data = raw[:at] + bytes([flipped]) + raw[at + 1:]
            if flipped not in (0x09, 0x0A, 0x0D) and _is_broken_text(data):
                return Case(rel, kind, data, f"byte {at}: 0x{byte:02x} -> 0x{flipped:02x}")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    nodes = list(_walk(root))
    doc = _doc_kind(rel)
    if kind == "truncate":
        inside = [n for _, n, _ in nodes
                  if (isinstance(n, yaml.ScalarNode) and n.style in ("'", '"'))
                  or (isinstance(n, yaml.CollectionNode) and n.flow_style)]
        if not inside or rng.random() < 0.1:  # nothing but the leading comments
            first = root.start_mark.index
            data = text[:first].encode()
            return Case(rel, kind, data, "down to no document")
        node = rng.choice(inside)
        start, end = _span(text, node)
        cut = rng.randrange(start + 1, max(start + 2, end - 1))
        return Case(rel, kind, raw[:cut], f"cut at byte {cut} inside {text[node.start_mark.index:node.end_mark.index][:40]!r}")
    if kind == "type_swap":
        options = [(path, node, values) for path, node, _ in nodes
                   for pattern, values in _TYPED[doc] if _matches(pattern, path)]
        path, node, values = rng.choice(options)
        value = rng.choice(values)
        start, end = _span(text, node)
        tail = "\n" if raw[start:end].endswith(b"\n") else ""
        data = raw[:start] + value.encode() + tail.encode() + raw[end:]
        return Case(rel, kind, data, f"{'.'.join(map(str, path))}: {value}")
    keys = [(path, key) for path, _, key in nodes
            if key is not None and _key_vocabulary(doc, path) is not None]
    path, key = rng.choice(keys)
    vocabulary = _key_vocabulary(doc, path) or set()
    new = _typo(rng, str(key.value), vocabulary)
    start, end = _span(text, key)
    data = raw[:start] + new.encode() + raw[end:]
    return Case(rel, "wrong_key", data, f"{'.'.join(map(str, path))} -> {new}")


# --- the harness ----------------------------------------------------------------------------
class _Ran(Exception):
    pass


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real-project") / "proj"
    root.mkdir()
    for part in PROJECT_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, root / part)
        else:
            shutil.copy2(src, root / part)
    return root


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every way migrate reaches a host, reads a metric, starts a process or opens
    a connection with a recorder."""
    import socket
    import subprocess

    import orchestrator.metrics.sources as sources
    from orchestrator.runners.ansible import AnsiblePlaybookRunner
    from orchestrator.runners.local import LocalCommandRunner
    from orchestrator.runners.ssh import SshCommandRunner

    calls: list[str] = []

    def recorder(what: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            calls.append(what)
            raise _Ran(what)
        return record

    monkeypatch.setattr(AnsiblePlaybookRunner, "run_playbook", recorder("playbook"))
    monkeypatch.setattr(LocalCommandRunner, "run_command", recorder("local command"))
    monkeypatch.setattr(SshCommandRunner, "run_command", recorder("ssh command"))
    registry = getattr(sources, "SOURCES", None)
    if registry is None:  # the older layout: sources register themselves on import
        from orchestrator.metrics.sources.base import SOURCES as registry

        sources.load_all()  # type: ignore[attr-defined]
    for name, entry in list(registry.items()):
        reader = getattr(entry, "reader", entry)
        for method in ("read", "read_many"):
            if hasattr(reader, method):
                monkeypatch.setattr(reader, method, recorder(f"metric source {name}"))
    monkeypatch.setattr(subprocess, "Popen", recorder("a process"))
    monkeypatch.setattr(socket.socket, "connect", recorder("a connection"))
    return calls


def run_cli(*args: str) -> tuple[int, str, str]:
    """`migrate ARGS` in this process: exit code, stdout, stderr. An exception that escapes
    `main` (a traceback for the operator) is returned as exit -1 with its repr."""
    from orchestrator.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
        except _Ran:
            raise
        except BaseException as exc:  # noqa: BLE001 - this is what the test looks for
            return -1, out.getvalue(), f"{err.getvalue()}\nTraceback (escaped): {exc!r}"
    return int(code or 0), out.getvalue(), err.getvalue()


def test_the_cases_are_spread_over_files_and_kinds() -> None:
    cases = [make_case(i) for i in range(CASES)]
    assert len(cases) >= 200
    assert {c.file for c in cases} == set(_files())
    assert {c.kind for c in cases} == {"non_utf8", "control", "flip", "truncate", "type_swap",
                                       "wrong_key"}
    assert sum(c.kind == "non_utf8" for c in cases) >= 30
    assert len({(c.file, c.data) for c in cases}) >= CASES * 0.95  # hardly two alike


@pytest.mark.parametrize("index", range(CASES))
def test_a_broken_project_file_is_a_clean_problem(index: int, template: Path, tmp_path: Path,
                                                  nothing_runs: list[str]) -> None:
    case = make_case(index)
    root = tmp_path / "proj"
    shutil.copytree(template, root)
    (root / case.file).write_bytes(case.data)
    where = re.compile(rf"^{re.escape(case.file)}:(\d+): ", re.MULTILINE)
    for args in (("validate",), ("phase", "1", "--host", "main")):
        code, out, err = run_cli("--project", str(root), *args)
        context = f"{case.kind} in {case.file} ({case.note}); migrate {' '.join(args)}:\n{err}"
        assert code == 2, context
        assert "Traceback" not in err + out, context
        lines = [int(n) for n in where.findall(err)]
        assert lines, context  # FILE:LINE of the broken file
        assert all(n >= 1 for n in lines), context
        assert not nothing_runs, context
        assert not (root / ".migrate").exists(), context
