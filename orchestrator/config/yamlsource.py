"""YAML that remembers where each value came from, so that every problem says FILE:LINE.

PyYAML throws away node positions once it builds Python objects. This loader keeps
them: mappings load as `YDict` (with the line of each key) and sequences as `YList`
(with the line of each item). Everything else loads as plain Python values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator._exceptions import Problem

try:  # the C loader is several times faster; fall back when libyaml is absent
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _BaseLoader = yaml.SafeLoader


class YDict(dict[str, Any]):
    """A mapping that knows its own line and the line of each of its keys."""

    line: int = 0
    key_lines: dict[str, int]
    duplicate_keys: list[tuple[str, int]]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YList(list[Any]):
    """A sequence that knows its own line and the line of each item."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _LineLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    pass


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> YDict:
    loader.flatten_mapping(node)
    out = YDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    out.duplicate_keys = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in out:
            out.duplicate_keys.append((key, key_node.start_mark.line + 1))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: Any, node: yaml.SequenceNode) -> YList:
    out = YList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class YamlLoadError(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def load_yaml(path: Path, display: str | None = None) -> Any:
    """Load one YAML file; a syntax error becomes a Problem with the file and line."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlLoadError(Problem(name, 0, f"cannot read: {exc.strerror}")) from exc
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - safe loader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        reason = exc.problem or "malformed YAML"
        raise YamlLoadError(Problem(name, line, f"malformed YAML: {reason}")) from exc
    except yaml.YAMLError as exc:
        raise YamlLoadError(Problem(name, 0, f"malformed YAML: {exc}")) from exc
