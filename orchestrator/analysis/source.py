"""Reading a source file: bytes to text, what is not text, and line counts.

A file that cannot be read is the operator's problem only when it is the path
they named; inside a directory it is *skipped*, with the reason, and the rest of
the report still comes out. A file that is not text (its bytes do not decode in
the encoding it declares, UTF-8 by default, or it holds NUL bytes) is always
skipped with the reason, never a traceback.

Line counts
    ``total_lines``: lines as CPython numbers them. ``code_lines``: lines holding
    something other than blanks and a comment, i.e. without blank and
    comment-only lines; docstrings and other strings count as code, including a
    line inside a multi-line string that starts with ``#``. (The same figure as
    counting the lines with a token that is not a comment, computed without
    running Python's slow tokenizer over every file.)
"""

from __future__ import annotations

import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

from orchestrator._exceptions import ConfigError, Problem


class PathProblem(Problem):
    """A problem with the path itself: printed ``PATH: message``, there is no line."""

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def path_error(path: Path, message: str) -> ConfigError:
    """The ConfigError (exit 2) for an analysed path that is missing, unreadable or empty."""
    return ConfigError([PathProblem(str(path), 0, message)])


class NotText(Exception):
    """The file is not Python text; the message is the reason it is skipped."""


@dataclass(frozen=True)
class Source:
    size_bytes: int
    text: str


def read_source(path: Path) -> Source:
    """The file's text. OSError if unreadable; NotText if its bytes are not text."""
    return decode_source(path.read_bytes())


def decode_source(data: bytes) -> Source:
    """Bytes to text as CPython would read them; NotText if they are not text."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except (SyntaxError, LookupError) as exc:
        # A bad byte in the first two lines fails here already; say which byte.
        encoding, declared = "utf-8", str(exc)
    else:
        declared = ""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise NotText(f"not text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                      f"is not {encoding}") from exc
    if declared:
        raise NotText(f"not text: {declared}")
    if encoding == "utf-8-sig" and text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise NotText("not text: holds NUL bytes")
    return Source(len(data), text)


def line_counts(rows: list[str], string_spans: list[tuple[int, int]]) -> tuple[int, int]:
    """(total lines, code lines) of a file split into `rows` (see the module docstring)."""
    total = len(rows)
    if rows and rows[-1] == "":
        total -= 1  # the text ends with a newline: no line after it
    code = 0
    for row in rows[:total]:
        stripped = row.strip()
        if stripped and stripped[0] != "#":
            code += 1
    extra: set[int] = set()
    for first, last in string_spans:
        opening = rows[first - 1] if 0 < first <= total else ""
        if '"""' not in opening and "'''" not in opening:
            continue  # implicit concatenation over lines, comments between are comments
        for number in range(first + 1, min(last, total) + 1):
            if rows[number - 1].lstrip().startswith("#"):
                extra.add(number)
    return total, code + len(extra)
