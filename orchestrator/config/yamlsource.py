"""YAML that remembers where each value came from, so that every problem says FILE:LINE.

PyYAML throws away node positions once it builds Python objects. This loader keeps
them: mappings load as `YDict` (with the line of each key) and sequences as `YList`
(with the line of each item). Everything else loads as plain Python values.

Hostile or broken files are one `Problem` each, never a traceback: bytes that are not
UTF-8 (FILE:LINE of the first bad byte), characters YAML refuses, values no constructor
can build (a 30th of February), nesting deeper than `MAX_DEPTH` (libyaml's composer
recurses in C and would crash the interpreter), and aliases that expand to more than
`MAX_ALIAS_NODES` nodes or refer to themselves (an alias bomb is refused at once, before
anything walks its expansion).
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}  # a YDict() made in code (an empty default) is complete too
        self.duplicate_keys = []

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YList(list[Any]):
    """A sequence that knows its own line and the line of each item."""

    line: int = 0
    item_lines: list[int]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines = []

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


MAX_DEPTH = 100  # nested collections
MAX_ALIAS_NODES = 100_000  # nodes that aliases add when expanded


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line, self.message = line, message
        super().__init__(message)


class _LineLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # no `&` anywhere: no anchor, so no alias to check (half the load of a
        # 10,000-host inventory went to walking its graph for them)
        self.anchored = "&" in stream

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        if self.anchored:
            _check_aliases(node)
        return self.construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark) from exc


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_aliases(root: yaml.Node) -> None:
    """Refuse self-referring aliases and aliases that expand past MAX_ALIAS_NODES.

    The composer hands an alias back as the anchored node itself, so the document is a
    graph; its expanded size is counted once per node (iteratively, memoized), which
    takes time linear in the file however large the expansion.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    distinct = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] - distinct > MAX_ALIAS_NODES:
                raise _Refused(node.start_mark.line + 1,
                               f"aliases of the anchor here expand to more than "
                               f"{MAX_ALIAS_NODES} nodes: refused (an alias bomb?)")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _Refused(node.start_mark.line + 1, "an alias refers to its own anchor")
        on_path.add(key)
        distinct += 1
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _check_depth(text: str) -> None:
    """Refuse collections nested deeper than MAX_DEPTH, from the parser's event stream
    (which keeps its own stack) before anything recursive sees the document.

    Skipped when the text cannot nest that deep: every two levels of block nesting
    start at least one column further right, and each flow level needs a `[` or `{`."""
    widest = max(map(len, text.splitlines()), default=0)
    if 2 * (widest + 1) + text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise _Refused(mark.line + 1 if mark else 0,
                               f"collections nested more than {MAX_DEPTH} deep: refused")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


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


def add_line_constructors(loader: Any) -> None:
    """Make `loader` (a SafeLoader class) build YDicts and YLists, which know their lines:
    the configuration's loader here and the service manifests' (analysis/manifests.py)."""
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


add_line_constructors(_LineLoader)


class YamlLoadError(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def load_yaml(path: Path, display: str | None = None) -> Any:
    """Load one YAML file; a syntax error becomes a Problem with the file and line."""
    name = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlLoadError(Problem(name, 0, f"cannot read: {exc.strerror}")) from exc
    text = _decode(raw, name)
    try:
        _check_depth(text)
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - safe loader subclass
    except _Refused as exc:
        raise YamlLoadError(Problem(name, exc.line, exc.message)) from exc
    except yaml.reader.ReaderError as exc:
        line = text[:max(0, exc.position)].count("\n") + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else "character"
        raise YamlLoadError(Problem(name, line, f"malformed YAML: unacceptable {what}: "
                                    f"{exc.reason}")) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        reason = exc.problem or "malformed YAML"
        raise YamlLoadError(Problem(name, line, f"malformed YAML: {reason}")) from exc
    except yaml.YAMLError as exc:
        raise YamlLoadError(Problem(name, 0, f"malformed YAML: {exc}")) from exc
    except (ValueError, RecursionError, MemoryError) as exc:  # anything else the loader hits
        raise YamlLoadError(Problem(name, 0, f"malformed YAML: {exc}")) from exc


def _decode(raw: bytes, name: str) -> str:
    """UTF-8 text, or a Problem at the line of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlLoadError(Problem(
            name, line, f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {column} "
            "(save the file as UTF-8)")) from exc
