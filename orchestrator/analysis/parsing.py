"""Tolerant parsing: an `ast.Module` for any Python text, broken or not, and its syntax errors.

Why
---
Half-migrated agent code is exactly what `migrate analyze` is for, and much of it
does not parse: bulk edits leave stray closing brackets, stray indents, a `try:`
whose body is only a comment, a `(` never closed. `ast.parse` stops at the first
of these and gives nothing. This module gives the analysers an ordinary
`ast.Module` holding every statement that can be read, with its real line numbers,
and lists every syntax error with CPython's own message and line.

The choice: structure from parso's tokenizer, statements from CPython
--------------------------------------------------------------------
Two ways were weighed. (a) Walk parso's error-recovering *tree* and re-detect
every fact (imports, dataflow, sockets, threads...) on parso nodes: a second copy
of every analyser, on a tree whose shape around errors is parso's guess. (b) Give
the analysers a normal `ast` tree made of the statements that do parse. (b) keeps
one set of analysers and exact CPython semantics, so it is what this module does.
parso still does the part CPython cannot: its tokenizer never gives up (unclosed
brackets and strings, bad dedents), and it breaks out of an unclosed bracket at a
line starting with `def`, `class`, `import`, `return`... (parso's "always break"
tokens), so one `(` never closed does not swallow the rest of the file. The parso
*parser* is not used: on a 300-file tree it costs about three times the tokenizer
(about 1 s per MB against 0.3), and the tokenizer is all the structure needs.

How, step by step
-----------------
1. ``ast.parse`` the whole text. Nearly every file stops here.
2. Repair in place where CPython points, one reported error per repair, never
   adding or removing a line (so every line number stays true):
   an unmatched closing bracket is blanked; one that does not match its opener
   is swapped for the one that does; an unterminated string is closed where it
   starts (a triple-quoted one makes the rest of the file a string, as CPython
   reads it); a line with an unexpected indent (or a dedent to no outer level)
   takes the indentation of a statement before it, and a stray indented block
   is one error; a header with an empty block gets ``pass``; a ``try:`` with no
   except or finally becomes ``if 1:``; a missing ``:`` is added; a ``(`` never
   closed is closed at the end of its line; a line with invalid syntax is cut
   where CPython stops reading it, or becomes ``pass``, or goes (its own
   statement, such as an injected import, is still analysed). Each rewrite of
   a line is kept only if CPython then gets past that line (and, where text was
   removed or a bracket closed, not on an indentation error, which is what a
   wrong guess causes), so a repair does not invent errors. Most broken files
   end here, with their complete tree. (The file is parsed piece by piece,
   `_Pieces`, so that each re-parse reads only from the first piece that does not
   parse alone: the same tree and errors as parsing it whole, at a fraction of the cost.)
3. Still broken: parso's tokenizer cuts the text into logical lines; their
   indentation makes a tree of *units* (a statement with its indented block, with
   its ``elif``/``else``/``except``/``finally`` clauses and its decorators).
   Each unit is handed to CPython alone, at its real line numbers (the text is
   padded with blank lines; an indented unit is wrapped in ``if 1:``). A unit
   that parses is kept whole. One that does not is opened: a compound statement
   keeps its header (``def``/``class``/``if``/``for``/``while``/``with``, parsed
   with a ``pass`` body; a header with an unclosed bracket is closed, so
   ``class A(BaseAgent:`` keeps its base; a header beyond that still gives a
   stub with the name) and its block is recovered unit by unit, recursively;
   ``try`` and the other clauses have their blocks recovered in place.
4. A simple statement that does not parse is *salvaged*: its brackets repaired
   as in step 2, else line by line, each physical line that parses alone (or
   with the next lines, while CPython says a bracket or string is still open,
   or up to where CPython stops reading it) is kept.

Errors are those of the smallest broken piece, so one mistake is one error:
the statement's own CPython error; ``unexpected indent`` for a block under a
simple statement; ``expected an indented block after ...`` (CPython's wording,
at the next statement's line) for a header with nothing under it;
``unindent does not match any outer indentation level``. A unit that fails
although every piece of it parses reports CPython's error for the unit. They
are listed by line; CPython itself reports whichever it meets first, which is
not always the earliest (a bracket error is raised as soon as it is read).

What is lost is reported too: `Parsed.unparsed` lists the code lines (ranges)
that no recovered statement covers.

How well: on stdlib modules broken at random in the issue's ways (about 1,300
files, 1 to 3 breaks each), CPython's own first error is in the list for 99% of
them, and 99.6% of the calls on the lines left intact are recovered, at their
exact line and column.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Parsed", "SyntaxIssue", "parse_source"]

_LINE_SPLIT = re.compile(r"\r\n|\r|\n")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_MISMATCH = re.compile(r"closing parenthesis '(.)' does not match opening parenthesis '(.)'")
# Clause keyword -> the keywords of the statements it may follow.
_CLAUSE_OF: dict[str, frozenset[str]] = {
    "elif": frozenset({"if", "elif"}),
    "else": frozenset({"if", "elif", "for", "while", "try", "except", "async for"}),
    "except": frozenset({"try", "except"}),
    "finally": frozenset({"try", "except", "else"}),
}
# Headers that parse on their own with a `pass` body (try, match and the clauses do not).
_STUBBABLE = frozenset({"def", "async def", "class", "if", "for", "async for", "while",
                        "with", "async with"})
_DEFS = frozenset({"def", "async def", "class"})
_COMPOUND = frozenset({"if", "elif", "else", "for", "async for", "while", "try", "except",
                       "finally", "with", "async with", "def", "async def", "class",
                       "match", "case"})
_NEXT_TOKEN_ERRORS = ("expected an indented block", "expected 'except' or 'finally' block",
                      "unexpected unindent")
_SALVAGE_SPAN = 40  # lines a salvaged statement may extend over while CPython says it is open
_MAX_REPAIRS = 50
_MAX_WHOLE_PARSES = 60  # of the whole file, in step 2


@dataclass(frozen=True, order=True)
class SyntaxIssue:
    """One syntax error: the line CPython points at and its message."""

    line: int
    message: str

    def as_dict(self) -> dict[str, int | str]:
        return {"line": self.line, "message": self.message}


@dataclass
class Parsed:
    """The recovered module, the errors, and the code line ranges that could not be read."""

    tree: ast.Module
    errors: list[SyntaxIssue] = field(default_factory=list)
    unparsed: list[tuple[int, int]] = field(default_factory=list)

    @property
    def parses(self) -> bool:
        return not self.errors


def split_lines(text: str) -> list[str]:
    """Lines as CPython numbers them (only \\n, \\r\\n and \\r end a line), without the ends."""
    return _LINE_SPLIT.split(text) if "\r" in text else text.split("\n")


def parse_source(text: str) -> Parsed:
    """`text` as an `ast.Module`, recovering what it can when `text` is not valid Python.

    Raises ValueError only for text CPython refuses outright (NUL bytes).
    """
    if "\x00" in text:
        raise ValueError("contains NUL bytes, so it is not Python source")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not our business
        if not _Pieces.worth_it(text):
            try:
                return Parsed(ast.parse(text))
            except SyntaxError as first:
                return _Recovery(text, first).run()
        rows = split_lines(text)
        pieces = _Pieces(rows)
        outcome = pieces.parse()
        if isinstance(outcome, ast.Module):
            return Parsed(outcome)
        return _Recovery(text, outcome, pieces, rows).run()


# --------------------------------------------------------------------------- structure


@dataclass
class _Logical:
    """One logical line from parso's tokenizer."""

    first: int
    last: int
    indent: int
    keyword: str  # "def", "async def", "if", "@", "except*"..., else the first token
    name: str  # the token after def/class, for stubs
    block: bool  # ends with ':' after a compound keyword: a block should follow


@dataclass
class _Unit:
    """A logical line with its indented block, its clauses and decorators."""

    line: _Logical
    start: int  # first line, decorators included
    children: list[_Unit] = field(default_factory=list)
    clauses: list[_Unit] = field(default_factory=list)
    end: int = 0

    @property
    def keyword(self) -> str:
        return self.line.keyword


def _logical_lines(text: str) -> list[_Logical]:
    from parso.python.tokenize import PythonTokenTypes, tokenize
    from parso.utils import parse_version_string

    types = PythonTokenTypes
    breaks = {types.NEWLINE, types.ENDMARKER}
    splits = {types.INDENT, types.DEDENT, types.ERROR_DEDENT}
    always_break = {"import", "class", "def", "try", "except", "finally", "while", "with",
                    "return", "continue", "break", "del", "pass", "global", "assert",
                    "nonlocal"}
    physical = split_lines(text)
    out: list[_Logical] = []
    toks: list = []  # PythonToken, untyped in parso
    depth = 0

    def flush() -> None:
        nonlocal depth
        if toks:
            out.append(_make_logical(toks, physical))
            toks.clear()
        depth = 0

    version = parse_version_string("3.11")
    for tok in tokenize(text, version_info=version):
        kind = tok.type
        if kind in breaks:
            flush()
            continue
        if kind in splits:
            flush()
            continue
        if toks and depth > 0 and kind is types.NAME and tok.string in always_break:
            # parso gives up the unclosed bracket here; the statement that broke it
            # starts with the first token of this physical line.
            row = tok.start_pos[0]
            cut = len(toks)
            while cut > 0 and toks[cut - 1].start_pos[0] == row:
                cut -= 1
            if cut == 0:
                cut = len(toks)
            carried = toks[cut:]
            del toks[cut:]
            flush()
            toks.extend(carried)
            depth = sum(1 for t in carried if t.string in ("(", "[", "{"))
        if kind is types.OP:
            if tok.string in "([{":
                depth += 1
            elif tok.string in ")]}" and depth:
                depth -= 1
        toks.append(tok)
    flush()
    return out


def _make_logical(toks: list, physical: list[str]) -> _Logical:
    first_tok = toks[0]
    first = first_tok.start_pos[0]
    last = max(first, toks[-1].end_pos[0])
    row = physical[first - 1] if first - 1 < len(physical) else ""
    ws = row[: len(row) - len(row.lstrip(" \t\f"))]
    indent = len(ws.replace("\f", "").expandtabs(8))
    strings = [t.string for t in toks[:3]]
    keyword = strings[0]
    name = strings[1] if len(strings) > 1 else ""
    if keyword == "async" and len(strings) > 1 and strings[1] in ("def", "with", "for"):
        keyword = f"async {strings[1]}"
        name = strings[2] if len(strings) > 2 else ""
    elif keyword == "except" and name == "*":
        keyword = "except*"
    block = toks[-1].string == ":" and keyword.rstrip("*") in _COMPOUND
    return _Logical(first, last, indent, keyword, name, block)


def _units(lines: list[_Logical]) -> tuple[list[_Unit], list[SyntaxIssue]]:
    """The unit tree by indentation, and the dedents that match no outer level."""
    root = _Unit(_Logical(0, 0, -1, "", "", True), 0)
    stack = [root]
    issues: list[SyntaxIssue] = []
    for line in lines:
        while stack[-1].line.indent >= line.indent:
            stack.pop()
        parent = stack[-1]
        unit = _Unit(line, line.first)
        siblings = parent.children
        if parent is root:
            if line.indent > 0 and (not siblings or siblings[-1].line.indent == 0):
                issues.append(SyntaxIssue(line.first, "unexpected indent"))
        elif siblings and siblings[-1].line.indent != line.indent:
            issues.append(SyntaxIssue(line.first,
                                      "unindent does not match any outer indentation level"))
        previous = siblings[-1] if siblings else None
        owner_kw = (previous.clauses[-1].keyword if previous and previous.clauses
                    else previous.keyword if previous else "")
        clause_kw = line.keyword.rstrip("*")
        if previous is not None and clause_kw in _CLAUSE_OF \
                and owner_kw.rstrip("*") in _CLAUSE_OF[clause_kw] \
                and previous.line.indent == line.indent:
            previous.clauses.append(unit)
        elif line.keyword in _DEFS and previous is not None and previous.keyword == "@" \
                and previous.line.indent == line.indent:
            decorators = 0
            while decorators < len(siblings) and siblings[-1 - decorators].keyword == "@" \
                    and siblings[-1 - decorators].line.indent == line.indent:
                decorators += 1
            unit.start = siblings[-decorators].start
            del siblings[-decorators:]
            siblings.append(unit)
        else:
            siblings.append(unit)
        stack.append(unit)
    _set_ends(root)
    return root.children, issues


def _set_ends(unit: _Unit) -> int:
    end = unit.line.last
    for child in unit.children:
        end = max(end, _set_ends(child))
    for clause in unit.clauses:
        end = max(end, _set_ends(clause))
    unit.end = end
    return end


# --------------------------------------------------------------------------- recovery


# --------------------------------------------------------------------------- whole file


_PIECE = 120  # lines: the least a piece of the file that is parsed alone holds
_CODE_START = frozenset(" \t\f#)]}")  # a line starting with one of these starts no statement
_CLAUSE = re.compile(r"(?:else|elif|except|finally)\b")


class _Pieces:
    """``ast.parse("\\n".join(rows))``, the tree or the SyntaxError, without parsing the
    same text again and again while step 2 repairs the file one error at a time.

    The file is read in pieces of consecutive statements, at their real line numbers
    (padded with blank lines): top-level statements and, in a large top-level class,
    the statements of its body (parsed under the class's own decorators and header).
    A piece that parses alone is kept, with its statements; the first one that does
    not, and everything after it, is parsed in one go (``rest``), as part of the file
    from there on. CPython's parser reads a block's statements one after another and
    each only from its own tokens, so once the statements before a line are known to
    parse (and end where they end alone: the next piece does not start with
    ``else``/``elif``/``except``/``finally``, nor deeper or shallower than them),
    parsing from that line gives the error, or the statements, that parsing the whole
    file gives. After a repair only the part from the last piece kept is read again.

    Where a piece starts is guessed from the lines alone (a line at the block's
    indentation starting with code); a wrong guess (inside a string or brackets) only
    makes the piece fail alone, so it is read as part of the rest: never a wrong answer.
    """

    def __init__(self, rows: list[str], by_pieces: bool = True) -> None:
        self.rows = rows
        self.by_pieces = by_pieces and len(rows) > 3 * _PIECE  # else: whole, each time
        self.done = 0  # rows[:done] are statements already parsed (pieces kept)
        self.kept: list[str] = []  # rows[:done] as they were when kept
        self.top: list[ast.stmt] = []  # the top-level statements of the pieces kept
        self.head = (0, 0)  # in a class: rows[head[0]:head[1]] its decorators and header
        self.indent = ""  # in a class: its body's indentation ("" at the top level)
        self.limit = 0  # in a class: the row where it ends
        self.body: list[ast.stmt] = []  # in a class: the statements of its body kept
        self.node: ast.ClassDef | None = None  # in a class: as parsed with the last piece
        self.large: dict[int, bool] = {}  # row -> whether a large class starts there

    @staticmethod
    def worth_it(text: str) -> bool:
        """Whether reading `text` by pieces can pay (a file of a few pieces at least), and
        is sound: a `barry_as_FLUFL` future import changes how the rest is parsed."""
        return text.count("\n") >= 3 * _PIECE and "barry_as_FLUFL" not in text

    def parse(self) -> ast.Module | SyntaxError:
        rows = self.rows
        if self.done and rows[: self.done] != self.kept:  # a repair before: start again
            self.__init__(rows, self.by_pieces)  # type: ignore[misc]
        self.large.clear()
        if self.by_pieces:
            while self._advance():
                pass
            self.kept = rows[: self.done]
        return self._rest()

    def _advance(self) -> bool:
        """Keep one more piece (or enter or leave a class); False at the first that fails."""
        rows = self.rows
        if self.indent:
            if self.done >= self.limit:  # the class's body is all kept: so is the class
                assert self.node is not None
                self.node.body = self.body
                self.top.append(self.node)
                self.indent, self.body, self.node = "", [], None
                return True
            start = self.done
            end = self._cut(start, self.limit, self.indent) or self.limit
            try:
                module = ast.parse(self._in_class(start, end) + "\n")
            except SyntaxError:
                return False
            node = module.body[0] if len(module.body) == 1 else None
            if not isinstance(node, ast.ClassDef) or not node.body \
                    or node.body[0].lineno <= start:  # a statement in what we took for its header
                return False
            self.body.extend(node.body)
            self.node = node
            self.done = end
            return True
        if len(rows) - self.done < 2 * _PIECE:
            return False
        if self._large_class(self.done):
            return self._enter_class()
        cut = self._cut(self.done, len(rows), "")
        if cut is None:
            return False
        try:
            module = ast.parse("\n" * self.done + "\n".join(rows[self.done: cut]) + "\n")
        except SyntaxError:
            return False
        self.top.extend(module.body)
        self.done = cut
        return True

    def _in_class(self, start: int, end: int | None) -> str:
        """The class's decorators and header, then its body's rows[start:end], in place."""
        rows = self.rows
        first, last = self.head
        return "\n" * first + "\n".join(rows[first:last]) + "\n" * (start - last + 1) \
            + "\n".join(rows[start:end])

    def _class_lines(self, row: int) -> tuple[int, int] | None:
        """From `row` (blank lines, comments, decorators, then `class` at the top level):
        the rows where the header ends and the body starts, or None if not a class."""
        rows = self.rows
        n = len(rows)
        while row < n and (not rows[row].strip() or rows[row][:1] == "#"):
            row += 1
        while row < n and rows[row][:1] == "@":
            row += 1
        if row >= n or not rows[row].startswith("class "):
            return None
        head_end = row
        while not _code_part(rows[head_end]).rstrip().endswith(":"):
            head_end += 1
            if head_end >= n or head_end - row > 20 \
                    or rows[head_end][:1] not in (" ", "\t", ")"):
                return None
        first = head_end + 1
        while first < n and (not rows[first].strip() or rows[first].lstrip()[:1] == "#"):
            first += 1
        if first >= n or not _leading_ws(rows[first]):
            return None
        return head_end + 1, first

    def _large_class(self, row: int) -> bool:
        """Whether a class worth reading by pieces starts at `row` (remembered: the rows
        do not change during `parse`)."""
        found = self.large.get(row)
        if found is None:
            lines = self._class_lines(row)
            found = lines is not None and self._class_end(lines[1]) - lines[1] >= 2 * _PIECE
            self.large[row] = found
        return found

    def _class_end(self, first: int) -> int:
        """The first row after `first` that starts with code at the top level."""
        rows = self.rows
        starts = _CODE_START
        return next((row for row in range(first + 1, len(rows))
                     if rows[row][:1] not in starts and rows[row]), len(rows))

    def _enter_class(self) -> bool:
        """At a large class (its decorators first): read its body piece by piece."""
        lines = self._class_lines(self.done)
        if lines is None:
            return False
        head_end, first = lines
        self.head = (self.done, head_end)
        self.indent = _leading_ws(self.rows[first])
        self.limit = self._class_end(first)
        self.done = first
        return True

    def _cut(self, start: int, stop: int, indent: str) -> int | None:
        """Where the piece from `start` ends: a line at least `_PIECE` on at `indent` that
        starts a statement of that block (at the top level, also where a large class
        starts), or None (the block's end is too near)."""
        rows = self.rows
        width = len(indent)
        for row in range(start + 1, stop - _PIECE // 2):
            line = rows[row]
            if not line.startswith(indent) or len(line) <= width \
                    or line[width] in _CODE_START or _CLAUSE.match(line, width):
                continue
            at_class = not width and line[:1] in ("@", "c") and self._large_class(row)
            if row < start + _PIECE and not at_class:
                continue
            before = row - 1
            while before > start and (not rows[before].strip()
                                      or rows[before].lstrip()[:1] == "#"):
                before -= 1
            previous = rows[before]
            if previous.rstrip().endswith("\\") or previous[width: width + 1] == "@":
                continue
            return row
        return None

    def _rest(self) -> ast.Module | SyntaxError:
        """Everything from the pieces kept on, parsed in one go; with them, the file."""
        rows = self.rows
        start = self.done
        try:
            if self.indent:
                module = ast.parse(self._in_class(start, None))
                node = module.body[0] if module.body else None
                if not isinstance(node, ast.ClassDef):  # cannot be: read the whole file
                    return self._whole()
                node.body = [*self.body, *node.body]
            else:
                module = ast.parse("\n" * start + "\n".join(rows[start:]))
        except SyntaxError as exc:
            return exc
        module.body = [*self.top, *module.body]
        return module

    def _whole(self) -> ast.Module | SyntaxError:
        try:
            return ast.parse("\n".join(self.rows))
        except SyntaxError as exc:
            return exc


class _Recovery:
    def __init__(self, text: str, first: SyntaxError, pieces: _Pieces | None = None,
                 rows: list[str] | None = None) -> None:
        self.first = first
        self.original = split_lines(text) if rows is None else rows
        self.rows = list(self.original)  # working copy; repairs patch it
        # the whole file, parsed piece by piece where that is sound
        self.pieces = pieces or _Pieces(self.rows, _Pieces.worth_it(text))
        self.pieces.rows = self.rows
        self.errors: dict[tuple[int, str], None] = {}
        self.next_line: dict[int, int] = {}  # logical line's last line -> next one's first
        self.covered: set[int] = set()  # header lines read without a statement of their own
        self.stubbed: set[int] = set()  # def/class lines standing in for a broken header
        self.dropped: list[tuple[int, str]] = []  # (line, text) taken out by a rewrite
        self.dedented: dict[int, str] = {}  # line -> its indentation before a rewrite
        self.whole_parses = 0

    # -- the steps

    def run(self) -> Parsed:
        tree = self._repair_in_place(self.first)
        if tree is None:
            text = "\n".join(self.rows)
            try:
                logical = _logical_lines(text)
            except Exception:  # parso must never take the report down: salvage lines
                logical = []
            if logical:
                for a, b in zip(logical, logical[1:], strict=False):
                    self.next_line[a.last] = b.first
                units, issues = _units(logical)
                for issue in issues:
                    self._add(issue.line, issue.message)
                body = self._block(units)
            else:
                body = self._salvage(1, len(self.rows))
            tree = ast.Module(body=body, type_ignores=[])
        for number, row in self.dropped:  # what a dropped line says still counts
            saved = self.rows[number - 1]
            self.rows[number - 1] = row
            tree.body.extend(self._salvage(number, number))
            self.rows[number - 1] = saved
        if not self.errors:  # cannot happen, but a broken file must say so
            self._add(self.first.lineno or 1, self.first.msg)
        errors = sorted(SyntaxIssue(line, msg) for line, msg in self.errors)
        return Parsed(tree, errors, self._unparsed(tree))

    def _repair_in_place(self, error: SyntaxError) -> ast.Module | None:
        """Step 2: repair, where CPython points, what bulk edits break most often.

        Returns the tree if that was all that was wrong, else None (self.rows keeps
        the repairs made so far, for step 3).
        """
        for _ in range(_MAX_REPAIRS):
            outcome: ast.Module | SyntaxError | None
            if self._repair(error):
                self._add(error.lineno or 1, error.msg)
                outcome = self._parse_all()
            else:
                outcome = self._rewrite_line(error)
            if outcome is None:
                return None
            if isinstance(outcome, ast.Module):
                return outcome
            error = outcome
        return None

    def _parse_all(self) -> ast.Module | SyntaxError:
        self.whole_parses += 1
        if self.whole_parses > _MAX_WHOLE_PARSES:  # a file of errors: leave it to step 3
            return SyntaxError("too many errors to repair in place")
        return self.pieces.parse()

    def _rewrite_line(self, error: SyntaxError) -> ast.Module | SyntaxError | None:
        """Rewrite the line CPython points at, if a rewrite lets CPython get past it.

        * unexpected indent, or an unindent that matches no outer level: the line
          takes the indentation of an enclosing statement before it (nearest first);
        * expected an indented block: the header before it gets a ``pass`` body;
        * expected 'except' or 'finally' block: the ``try:`` becomes ``if 1:``;
        * expected ':': the line gets its colon;
        * invalid syntax: the line is cut where CPython stops reading it, or becomes
          ``pass`` (so a block keeps a body) or, inside brackets, nothing; its
          statement, if it has one of its own (an import injected into another
          statement), is still analysed.

        A rewrite is kept only if CPython then parses the file or stops later on;
        where text was removed or a bracket closed, later than the next code line,
        which is where a wrong guess shows (the block under a removed header is
        misindented, the line after a wrongly closed bracket is left over). Each
        kept rewrite is one reported error; a stray indented block takes one
        rewrite per line but is one error.
        """
        line, msg = error.lineno, error.msg
        if not line or line > len(self.rows):
            return None
        original = self.rows[line - 1]
        code = _code_part(original)
        stripped = code.strip()
        candidates: list[tuple[int, str]] = []  # (line to change, its new text)
        strict = False
        if msg in ("unexpected indent", "unindent does not match any outer indentation level"):
            candidates = [(line, ws + original.lstrip(" \t\f"))
                          for ws in self._outer_indents(line)]
        elif msg.startswith("expected an indented block"):
            # the header is the code line before, or this one at the end of the file
            for header in (self._previous_code_line(line), line):
                head = self.rows[header - 1] if header else ""
                head_code = _code_part(head).rstrip()
                if header and head_code.endswith(":"):
                    candidates = [(header, head_code + " pass" + head[len(head_code):])]
                    break
        elif msg == "expected 'except' or 'finally' block":
            header = self._open_try(line)
            if header is not None:
                head = self.rows[header - 1]
                ws = _leading_ws(head)
                candidates = [(header, ws + "if 1:" + head[len(ws) + len("try:"):])]
        elif msg == "expected ':'" and stripped and not stripped.endswith(":"):
            candidates = [(line, code.rstrip() + ":" + original[len(code.rstrip()):])]
        elif msg.endswith("was never closed"):
            closers = _unclosed(code)
            if closers:
                end = len(code.rstrip())
                candidates = [(line, original[:end] + closers + original[end:])]
            strict = True
        elif msg.startswith("invalid syntax") and stripped:
            prefix = original[: (error.offset or 1) - 1].rstrip()
            if prefix.strip() and (error.end_lineno or line) == line and not _unclosed(prefix):
                candidates.append((line, prefix))  # `x = f(a) from`: keep `x = f(a)`
            candidates += [(line, _leading_ws(original) + "pass"), (line, "")]
            strict = True
        near = self._next_code_line(line) or line  # where a wrong guess shows first
        for number, text in candidates:
            before = self.rows[number - 1]
            self.rows[number - 1] = text
            outcome = self._parse_all()
            at = 0 if isinstance(outcome, ast.Module) else outcome.lineno or 0
            if isinstance(outcome, ast.Module) or (at > line and not (strict and at <= near)) \
                    or (at == line and outcome.msg != msg and not strict):
                if not self._continues_stray_block(line, msg, original):
                    self._add(line, msg)
                if not text.strip() or text.strip() == "pass":
                    self.dropped.append((line, original))
                return outcome
            self.rows[number - 1] = before
        return None

    def _continues_stray_block(self, line: int, msg: str, original: str) -> bool:
        """Whether this unexpected indent is the next line of a block already dedented."""
        previous = self._previous_code_line(line)
        stray = previous is not None and previous in self.dedented \
            and self.dedented[previous] == _leading_ws(original)
        if msg == "unexpected indent" or msg.startswith("unindent"):
            self.dedented[line] = _leading_ws(original)
        return stray and msg == "unexpected indent"

    def _open_try(self, line: int) -> int | None:
        """The `try:` line whose block ends before `line` with no except or finally."""
        width = _width(self.rows[line - 1]) if self.rows[line - 1].strip() else 0
        for number in range(line - 1, 0, -1):
            row = self.rows[number - 1]
            code = _code_part(row).strip()
            if not code:
                continue
            if _width(row) <= width:
                return number if code == "try:" else None
        return None

    def _last_line(self) -> int:
        """The number CPython gives the last line (a final newline starts no line)."""
        return len(self.rows) - 1 if len(self.rows) > 1 and self.rows[-1] == "" else len(self.rows)

    def _next_code_line(self, line: int) -> int | None:
        for number in range(line + 1, len(self.rows) + 1):
            stripped = self.rows[number - 1].strip()
            if stripped and not stripped.startswith("#"):
                return number
        return None

    def _previous_code_line(self, line: int) -> int | None:
        for number in range(line - 1, 0, -1):
            stripped = self.rows[number - 1].strip()
            if stripped and not stripped.startswith("#"):
                return number
        return None

    def _outer_indents(self, line: int) -> list[str]:
        """Indentations shallower than `line`'s, of the code lines before it, nearest first."""
        width = _width(self.rows[line - 1])
        found: list[str] = []
        for number in range(line - 1, 0, -1):
            row = self.rows[number - 1]
            stripped = row.strip()
            if not stripped or stripped.startswith("#"):
                continue
            ws = _leading_ws(row)
            if _width(row) < width and ws not in found:
                found.append(ws)
                width = _width(row)
                if len(found) == 3 or not ws:
                    break
        return found

    def _repair(self, error: SyntaxError, lo: int = 1, hi: int | None = None,
                local: bool = False) -> bool:
        """Patch self.rows for one bracket or string error inside lines lo..hi.

        `local`: the patch only has to make one statement parse, so a bracket never
        closed is closed at the end of its line (for the whole file, `_rewrite_line`
        does that, and only where it does not leave the lines after it misindented).
        """
        line, col = error.lineno, (error.offset or 0) - 1
        hi = len(self.rows) if hi is None else hi
        if line is None or not lo <= line <= hi or col < 0:
            return False
        row = self.rows[line - 1]
        msg = error.msg
        if col >= len(row):
            return False
        if msg.startswith("unmatched '") and row[col] in ")]}":
            self.rows[line - 1] = row[:col] + " " + row[col + 1:]
            return True
        mismatch = _MISMATCH.match(msg)
        if mismatch and row[col] == mismatch.group(1):
            self.rows[line - 1] = row[:col] + _CLOSERS[mismatch.group(2)] + row[col + 1:]
            return True
        if local and msg.endswith("was never closed"):
            code = _code_part(row)
            closers = _unclosed(code[col:])
            if closers:
                end = len(code.rstrip())
                self.rows[line - 1] = row[:end] + closers + row[end:]
                return True
        if msg.startswith("unterminated string literal"):
            self.rows[line - 1] = row[:col] + '""'
            return True
        if msg.startswith("unterminated triple-quoted string literal") and hi == len(self.rows):
            self.rows[line - 1] = row[:col] + '""'
            for k in range(line, len(self.rows)):
                self.rows[k] = ""
            return True
        return False

    # -- units

    def _block(self, units: list[_Unit]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for unit in units:
            out.extend(self._unit(unit))
        return out

    def _unit(self, unit: _Unit) -> list[ast.stmt]:
        try:
            return self._parse(unit.start, unit.end)
        except SyntaxError as exc:
            failure = exc
        before = len(self.errors)
        if unit.line.block or unit.clauses or unit.children:
            out = self._open(unit)
        else:
            out = self._simple(unit.start, unit.end)
            if unit.keyword in _DEFS:  # `def f(:` swallowed its body: keep the name
                stub = self._named_stub(unit.line)
                if isinstance(stub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    if out:
                        stub.body = out
                    out = [stub]
        if len(self.errors) == before:
            self._add_error(failure, unit.start, unit.end)
        return out

    def _open(self, unit: _Unit) -> list[ast.stmt]:
        """A unit that does not parse whole: its header, then its blocks, recovered apart."""
        line = unit.line
        if not line.block:  # a simple statement (or one-line compound) with a block under it
            out = self._simple(unit.start, line.last)
            if unit.children:
                self._add(unit.children[0].start, "unexpected indent")
                out += self._block(unit.children)
            for clause in unit.clauses:
                out += self._clause(clause)
            return out
        body = self._block(unit.children)
        if not unit.children:
            self._no_body(unit)
        if line.keyword == "try" and not unit.clauses:
            self._add(self.next_line.get(unit.end, self._last_line()),
                      "expected 'except' or 'finally' block")
        stub = self._stub(unit) if line.keyword in _STUBBABLE else None
        if stub is not None and isinstance(stub, ast.FunctionDef | ast.AsyncFunctionDef
                                           | ast.ClassDef | ast.If | ast.For | ast.AsyncFor
                                           | ast.While | ast.With | ast.AsyncWith):
            if body:
                stub.body = body
            out = [stub]
        else:
            if line.keyword not in _STUBBABLE:
                self._check_clause_header(unit, prefix="")
            out = body
        for clause in unit.clauses:
            out += self._clause(clause)
        return out

    def _clause(self, clause: _Unit) -> list[ast.stmt]:
        self._check_clause_header(clause, prefix=self._clause_prefix(clause))
        if clause.line.block and not clause.children:
            self._no_body(clause)
        return self._block(clause.children)

    @staticmethod
    def _clause_prefix(clause: _Unit) -> str:
        return "if 1: pass\n" if clause.keyword in ("elif", "else") else "try: pass\n"

    def _check_clause_header(self, unit: _Unit, prefix: str) -> None:
        """Report a broken header of a clause (or try/match) that cannot be parsed alone."""
        line = unit.line
        rows = self.rows[line.first - 1: line.last]
        if not rows:
            return
        rows = [rows[0].lstrip(" \t\f"), *rows[1:]]
        tail = "" if not line.block else "\n pass"
        if line.keyword in ("match", "case"):
            return  # soft keywords: a bad header shows as the unit's own error
        if line.keyword == "try" and not prefix:
            text = "\n".join(rows) + tail + "\nfinally: pass\n"
        else:
            text = prefix + "\n".join(rows) + tail + "\n"
        try:
            ast.parse(text)
        except SyntaxError as exc:
            shift = line.first - 1 - prefix.count("\n")
            self._add((exc.lineno or 1) + shift, exc.msg)
        else:
            self.covered.update(range(line.first, line.last + 1))

    def _no_body(self, unit: _Unit) -> None:
        line = unit.line
        keyword = line.keyword
        if keyword in ("def", "async def"):
            what = "function definition"
        elif keyword == "class":
            what = "class definition"
        else:
            what = f"'{keyword.replace('async ', '')}' statement"
        at = self.next_line.get(line.last, self._last_line())
        self._add(at, f"expected an indented block after {what} on line {line.first}")

    def _stub(self, unit: _Unit) -> ast.stmt | None:
        """A compound unit's header with a `pass` body; a named stub for a broken def/class."""
        line = unit.line
        head = self.rows[unit.start - 1: line.last]
        first_ws = _leading_ws(self.rows[line.first - 1])
        body = first_ws + " pass"  # deeper than the header, whatever it is made of
        for _ in range(_MAX_REPAIRS):
            try:
                parsed = self._parse_text(unit.start, [*head, body], indented=bool(first_ws))
                return _header_only(parsed[0], line.last) if parsed else None
            except SyntaxError as exc:
                error = exc
            if not self._repair(error, unit.start, line.last):
                break
            self._add(error.lineno or line.first, error.msg)
            head = self.rows[unit.start - 1: line.last]
        self._add(error.lineno or line.first, error.msg)
        closed = _close_brackets(head)
        if closed is not None:  # `class A(BaseAgent:` still names its base
            try:
                parsed = self._parse_text(unit.start, [*closed, body], indented=bool(first_ws))
                return _header_only(parsed[0], line.last) if parsed else None
            except SyntaxError:
                pass
        return self._named_stub(line)

    def _named_stub(self, line: _Logical) -> ast.stmt | None:
        """`def NAME(*args, **kwargs): pass` or `class NAME: pass` for a header beyond repair."""
        if line.keyword not in _DEFS or not line.name.isidentifier():
            return None
        first_ws = _leading_ws(self.rows[line.first - 1])
        kind = "class" if line.keyword == "class" else "def"
        args = "" if kind == "class" else "(*args, **kwargs)"
        stub = f"{first_ws}{'async ' if line.keyword == 'async def' else ''}" \
               f"{kind} {line.name}{args}: pass"
        try:
            parsed = self._parse_text(line.first, [stub], indented=bool(first_ws))
        except SyntaxError:
            return None
        self.stubbed.add(line.first)
        return parsed[0] if parsed else None

    def _simple(self, first: int, last: int) -> list[ast.stmt]:
        """A simple statement that failed: repair brackets, else salvage its lines.

        Its first error is reported; after a repair, only another bracket error is
        (what a repair uncovers otherwise is the repair's doing, not the file's).
        """
        repaired = False
        for _ in range(_MAX_REPAIRS):
            try:
                return self._parse(first, last)
            except SyntaxError as exc:
                error = exc
            if not repaired or _bracket(error):
                self._add_error(error, first, last)
            if not self._repair(error, first, last, local=True):
                break
            repaired = True
        return self._salvage(first, last)

    def _salvage(self, first: int, last: int) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        row = first
        while row <= last:
            stripped = self.rows[row - 1].strip()
            if not stripped or stripped.startswith("#"):
                row += 1
                continue
            got: list[ast.stmt] | None = None
            end = row
            for end in range(row, min(last, row + _SALVAGE_SPAN) + 1):
                try:
                    got = self._parse(row, end)
                    break
                except SyntaxError as exc:
                    if not _still_open(exc):
                        break
            if not got:
                got, end = self._prefix_of(row), row
            if got:
                out.extend(got)
                row = end + 1
            else:
                row += 1
        return out

    def _prefix_of(self, row: int) -> list[ast.stmt] | None:
        """Line `row` up to where CPython stops reading it (`x = f(a) from` gives `x = f(a)`)."""
        text = self.rows[row - 1]
        try:
            self._parse_text(row, [text], text[:1] in " \t\f")
        except SyntaxError as exc:
            if exc.lineno != row or not exc.offset or exc.offset <= 1:
                return None
            prefix = text[: exc.offset - 1].rstrip()
            if not prefix.strip():
                return None
            try:
                return self._parse_text(row, [prefix], prefix[:1] in " \t\f")
            except SyntaxError:
                return None
        return None

    # -- CPython at the right line numbers

    def _parse(self, first: int, last: int) -> list[ast.stmt]:
        rows = self.rows[first - 1: last]
        indented = bool(rows) and rows[0][:1] in (" ", "\t", "\f")
        return self._parse_text(first, rows, indented)

    @staticmethod
    def _parse_text(first: int, rows: list[str], indented: bool) -> list[ast.stmt]:
        body = "\n".join(rows) + "\n"
        if not indented:
            return ast.parse("\n" * (first - 1) + body).body
        if first >= 2:
            module = ast.parse("\n" * (first - 2) + "if 1:\n" + body)
        else:
            module = ast.parse("if 1:\n" + body)
            ast.increment_lineno(module, -1)
        wrapper = module.body[0]
        assert isinstance(wrapper, ast.If)
        return [*wrapper.body, *module.body[1:]]

    def _add_error(self, error: SyntaxError, first: int, last: int) -> None:
        """CPython's error for lines first..last parsed alone.

        An error about what should come *next* (a block, an except clause, a
        dedent) that CPython found at the end of the snippet is where the file's
        next statement starts, which is where CPython puts it in the whole file.
        """
        line = error.lineno or first
        if line >= last and error.msg.startswith(_NEXT_TOKEN_ERRORS):
            line = self.next_line.get(last, self._last_line())
        self._add(line, error.msg)

    def _add(self, line: int, message: str) -> None:
        self.errors.setdefault((line, message), None)

    def _unparsed(self, tree: ast.Module) -> list[tuple[int, int]]:
        covered = bytearray(len(self.rows) + 2)
        for stmt in _covering(tree.body):
            end = stmt.end_lineno or stmt.lineno
            covered[stmt.lineno: end + 1] = b"\x01" * (end + 1 - stmt.lineno)
        ranges: list[tuple[int, int]] = []
        for number, row in enumerate(self.original, start=1):
            stripped = row.strip()
            if not stripped or stripped.startswith("#") or number in self.covered \
                    or (covered[number] and number not in self.stubbed):
                continue
            if ranges and ranges[-1][1] == number - 1:
                ranges[-1] = (ranges[-1][0], number)
            else:
                ranges.append((number, number))
        return ranges


def _close_brackets(rows: list[str]) -> list[str] | None:
    """A header whose brackets never close, closed before its final ':'; None if not that."""
    opened: list[str] = []
    quote = ""
    code_end = 0  # where the last row's comment starts
    for row in rows:
        code_end = len(row)
        for at, char in enumerate(row):
            if quote:
                if char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char == "#":
                code_end = at
                break
            elif char in _CLOSERS:
                opened.append(_CLOSERS[char])
            elif char in ")]}" and opened and opened[-1] == char:
                opened.pop()
    if not opened or not rows:
        return None
    last = rows[-1]
    colon = last.rfind(":", 0, code_end)
    if colon < 0:
        return None
    return [*rows[:-1], last[:colon] + "".join(reversed(opened)) + last[colon:]]


def _width(row: str) -> int:
    return len(_leading_ws(row).replace("\f", "").expandtabs(8))


def _code_part(row: str) -> str:
    """`row` without its comment (quotes on the line are respected)."""
    quote = ""
    for at, char in enumerate(row):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return row[:at]
    return row


def _leading_ws(row: str) -> str:
    return row[: len(row) - len(row.lstrip(" \t\f"))]


def _header_only(stmt: ast.stmt, last: int) -> ast.stmt:
    """A stub's span is its header: its `pass` must not claim the line under it."""
    stmt.end_lineno = last
    for inner in getattr(stmt, "body", ()):
        inner.lineno = inner.end_lineno = last
    return stmt


def _indentation(error: SyntaxError) -> bool:
    msg = error.msg
    return msg.startswith(("unexpected indent", "expected an indented block", "unindent "))


def _bracket(error: SyntaxError) -> bool:
    return error.msg.startswith(("unmatched '", "closing parenthesis"))


def _unclosed(code: str) -> str:
    """The closing brackets `code` is missing, innermost first (strings respected)."""
    opened: list[str] = []
    quote = ""
    for char in code:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in _CLOSERS:
            opened.append(_CLOSERS[char])
        elif char in ")]}" and opened and opened[-1] == char:
            opened.pop()
    return "".join(reversed(opened))


def _still_open(error: SyntaxError) -> bool:
    msg = error.msg
    return msg.endswith("was never closed") or msg.startswith("expected an indented block") \
        or msg.startswith("unterminated triple-quoted")


def _covering(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements whose spans cover every line any statement covers: a statement's
    blocks are entered only when they reach past its own span (a stub's `_header_only`
    span), since a block inside the span covers nothing more."""
    stack = list(body)
    while stack:
        stmt = stack.pop()
        yield stmt
        end = stmt.end_lineno or stmt.lineno
        inner: list[ast.stmt] = []
        for name in ("body", "orelse", "finalbody"):
            block = getattr(stmt, name, None)
            if isinstance(block, list):
                inner.extend(s for s in block if isinstance(s, ast.stmt))
        for handler in getattr(stmt, "handlers", ()) or ():
            inner.extend(handler.body)
        for case in getattr(stmt, "cases", ()) or ():
            inner.extend(case.body)
        if any((s.end_lineno or s.lineno) > end or s.lineno < stmt.lineno for s in inner):
            stack.extend(inner)
