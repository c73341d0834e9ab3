"""A path to analyse: one file's document, or a whole tree's reports, summary and totals.

A file gives its document (flat: ``r["risk"]["score"]``), whatever its name. A
directory gives ``{"reports", "summary", "totals", "skipped", "excluded",
"duplicates", "warnings"}``:

* ``reports``: one document per distinct ``.py`` file under it, sorted by path
  (directories whose name starts with ``.``, such as ``.git`` or ``.venv``, are
  never entered);
* ``summary``: ``{file, score, level, syntax_errors, base_agent}`` per file, by
  score, highest first (``syntax_errors`` is the count, ``base_agent`` whether
  the file has a BaseAgent class);
* ``totals``: ``files`` (analysed), ``unparsable`` (files with syntax errors,
  analysed through the tolerant parser), ``agent_classes`` (BaseAgent classes
  plus legacy ones), ``base_agent_classes``, ``legacy_agent_classes`` (see
  `agents` for the rule), ``sockets`` ``{count, zmq, raw, by_type}`` and
  ``threads`` ``{count}`` summed over the files, ``risk`` ``{score}`` of the
  highest file, ``syntax_errors`` and ``worklist`` (sites) summed, and the counts of
  ``skipped``, ``excluded``, ``duplicates`` and ``warnings``; ``left_out``: how many
  files were left out for each reason (an exclusion, or duplicate content);
* ``skipped``: ``{file, reason}`` for each file that could not be analysed (not
  text, unreadable, a symlink loop) or directory that could not be listed;
* ``excluded``: ``{file, reason}`` for each ``.py`` file left out by an exclusion;
* ``duplicates``: ``{file, duplicate_of}`` for each file with the same bytes as one
  analysed (the one kept is the first by path among those not excluded by default);
* ``warnings``: ``{file, warning}``, e.g. a name that is not UTF-8 (it is analysed,
  and shown with ``\\xNN`` escapes).

Exclusions (`Exclusions`): by default, files under directories named like
``_trash_*``, ``*archive*``, ``*backup*``, ``__pycache__`` and files named
``*.bak*``, ``*_backup.py``, ``*_old.py``, ``*_copy.py`` (case-insensitive) are
left out; ``all_files`` keeps them. ``exclude`` globs are relative to the root: a
glob without ``/`` matches any one path component (``legacy``, ``*_test.py``), one
with ``/`` the path from the root or a directory on it (``pc2/old/*``).

Errors (ConfigError, exit 2, printed ``PATH: message``) only for the path
itself: missing, unreadable, or a directory with no ``.py`` file under it (files
left out by an exclusion count as there: the report then says why nothing was
analysed).

Speed: files with the same bytes are analysed once (also across the two trees of
`compare`). Many files are analysed in worker processes, one per CPU, biggest
files first so that the last one to finish is a small one, with the cyclic garbage
collector off (trees and documents are acyclic). `bench/analyze.py` times a
321-file tree like the real one: about 0.6 CPU-seconds per MB of agent source
analysed, about 60% of it in CPython's parser (about one full parse per file: a
broken file is read piece by piece, and after each repair only from the first
piece that failed, see `parsing._Pieces`).
"""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from orchestrator.analysis.report import analyze_file, analyze_readable, skipped
from orchestrator.analysis.source import path_error

# Below these, starting worker processes costs more than it saves.
POOL_MIN_FILES = 8
POOL_MIN_BYTES = 512 * 1024

DEFAULT_EXCLUDED_DIRS = ("_trash_*", "*archive*", "*backup*", "__pycache__")
DEFAULT_EXCLUDED_FILES = ("*.bak*", "*_backup.py", "*_old.py", "*_copy.py")


@dataclass(frozen=True)
class Exclusions:
    """What to leave out of a tree: the default patterns (unless `all_files`) and globs."""

    globs: tuple[str, ...] = ()
    all_files: bool = False

    def reason(self, rel: str) -> str | None:
        """Why the file at `rel` (posix, relative to the root) is left out, or None."""
        parts = rel.split("/")
        if not self.all_files:
            for directory in parts[:-1]:
                low = directory.lower()
                for pattern in DEFAULT_EXCLUDED_DIRS:
                    if fnmatchcase(low, pattern):
                        return f"default: under a {pattern} directory"
            low = parts[-1].lower()
            for pattern in DEFAULT_EXCLUDED_FILES:
                if fnmatchcase(low, pattern):
                    return f"default: named {pattern}"
        for glob in self.globs:
            if _glob_matches(glob, parts):
                return f"--exclude {glob}"
        return None


def _glob_matches(glob: str, parts: list[str]) -> bool:
    glob = glob.strip("/") or glob
    if glob.startswith("./"):
        glob = glob[2:]
    if "/" not in glob:
        return any(fnmatchcase(part, glob) for part in parts)
    return any(fnmatchcase("/".join(parts[:k]), glob) for k in range(1, len(parts) + 1))


def display_name(path: str | Path) -> str:
    """A path as text that can always be printed: bytes that are not UTF-8 as ``\\xNN``."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def analyze_path(path: Path, exclude: Sequence[str] = (), all_files: bool = False,
                 workers: int | None = None) -> dict[str, Any]:
    """A file: its document. A directory: reports, summary, totals and what was left out."""
    path = Path(path)
    if path.is_dir():
        return analyze_directory(path, workers, Exclusions(tuple(exclude), all_files))
    if not path.exists():
        raise path_error(path, "no such file or directory")
    doc = analyze_file(path)
    doc["file"] = display_name(doc["file"])
    return doc


@dataclass
class Tree:
    """A directory's `.py` files, chosen: what to analyse and what was left out, and why."""

    root: Path
    files: list[Path] = field(default_factory=list)  # to analyse, sorted
    kept: list[Path] = field(default_factory=list)  # readable and not excluded: with copies
    digests: dict[Path, str] = field(default_factory=dict)
    sizes: dict[Path, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def file_digest(path: Path) -> tuple[str, int]:
    """(digest, size) of the file's bytes; OSError if it cannot be read (or is a FIFO, a
    device: reading one could block for ever)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file")
    data = path.read_bytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest(), len(data)


def select(root: Path, exclusions: Exclusions = Exclusions(),
           digest_of: Callable[[Path], tuple[str, int]] = file_digest,
           found: list[Path] | None = None) -> Tree:
    """The files of `root` to analyse: exclusions applied, one file per distinct content.

    `digest_of` reads a file's digest (a cache may answer without reading); `found`
    the `.py` files when they are known already (listed on a host).
    """
    tree = Tree(root)
    if found is None:
        found, tree.skipped = python_files(root)
    kept: list[Path] = []
    for path in found:
        rel = path.relative_to(root).as_posix()
        why = exclusions.reason(rel)
        if why is not None:
            tree.excluded.append({"file": display_name(path), "reason": why})
        else:
            kept.append(path)
    # the original of a set of copies: not excluded by default, shallowest, first by path
    default = Exclusions()
    ranked = sorted(kept, key=lambda p: (default.reason(tree.rel(p)) is not None,
                                         len(p.parts), str(p)))
    first_of: dict[str, Path] = {}
    duplicate_of: dict[Path, Path] = {}
    for path in ranked:
        try:
            digest, size = digest_of(path)
        except OSError as exc:
            tree.skipped.append({"file": display_name(path),
                                 "reason": f"cannot read: {exc.strerror or exc}"})
            continue
        tree.digests[path] = digest
        tree.sizes[path] = size
        if digest in first_of:
            duplicate_of[path] = first_of[digest]
            continue
        first_of[digest] = path
    for path in kept:
        if path in tree.digests:
            tree.kept.append(path)
        if path in duplicate_of:
            tree.duplicates.append({"file": display_name(path),
                                    "duplicate_of": display_name(duplicate_of[path])})
        elif path in tree.digests:
            tree.files.append(path)
            name = str(path)
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                tree.warnings.append({"file": display_name(path),
                                      "warning": "name is not UTF-8 (shown with \\x escapes)"})
    tree.skipped.sort(key=lambda s: s["file"])
    return tree


def analyze_directory(root: Path, workers: int | None = None,
                      exclusions: Exclusions = Exclusions()) -> dict[str, Any]:
    tree = select_readable(root, exclusions)
    docs = analyze_many(tree.files, workers, tree.digests, tree.sizes)
    return assemble(tree, docs)


def select_readable(root: Path, exclusions: Exclusions = Exclusions(),
                    digest_of: Callable[[Path], tuple[str, int]] = file_digest) -> Tree:
    """`select`, with a ConfigError for a root that is unreadable or has no `.py` file."""
    try:
        with os.scandir(root):
            pass
    except OSError as exc:
        raise path_error(root, f"cannot read: {exc.strerror or exc}") from exc
    tree = select(root, exclusions, digest_of)
    if not (tree.files or tree.excluded or tree.duplicates
            or any(not s["reason"].startswith("cannot list") for s in tree.skipped)):
        raise path_error(root, "no .py file in it")
    return tree


def assemble(tree: Tree, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The directory result from the documents of `tree.files` (in that order)."""
    reports = []
    skipped_files = list(tree.skipped)
    for path, doc in zip(tree.files, docs, strict=True):
        if "skipped" in doc:
            skipped_files.append({"file": display_name(path), "reason": doc["skipped"]})
        else:
            reports.append(doc)
    skipped_files.sort(key=lambda s: s["file"])
    summary = sorted(
        ({"file": r["file"], "score": r["risk"]["score"], "level": r["risk"]["level"],
          "syntax_errors": len(r["syntax_errors"]), "base_agent": r["base_agent"]["inherits"]}
         for r in reports),
        key=lambda s: (-s["score"], s["file"]),
    )
    return {"reports": reports, "summary": summary,
            "totals": totals(reports, skipped_files, tree),
            "skipped": skipped_files, "excluded": tree.excluded,
            "duplicates": tree.duplicates, "warnings": tree.warnings}


def totals(reports: list[dict[str, Any]], skipped_files: list[dict[str, str]],
           tree: Tree) -> dict[str, Any]:
    base = sum(len(r["base_agent"]["classes"]) for r in reports)
    legacy = sum(len(r["base_agent"]["legacy_classes"]) for r in reports)
    by_type: dict[str, int] = {}
    for r in reports:
        for kind, count in r["sockets"]["by_type"].items():
            by_type[kind] = by_type.get(kind, 0) + count
    left_out: dict[str, int] = {}
    for item in tree.excluded:
        left_out[item["reason"]] = left_out.get(item["reason"], 0) + 1
    if tree.duplicates:
        left_out["duplicate content"] = len(tree.duplicates)
    return {
        "files": len(reports),
        "unparsable": sum(1 for r in reports if r["syntax_errors"]),
        "agent_classes": base + legacy,
        "base_agent_classes": base,
        "legacy_agent_classes": legacy,
        "sockets": {"count": sum(r["sockets"]["count"] for r in reports),
                    "zmq": sum(r["sockets"]["zmq"] for r in reports),
                    "raw": sum(r["sockets"]["raw"] for r in reports),
                    "by_type": dict(sorted(by_type.items()))},
        "threads": {"count": sum(r["threads"]["count"] for r in reports)},
        "risk": {"score": max((r["risk"]["score"] for r in reports), default=0)},
        "syntax_errors": sum(len(r["syntax_errors"]) for r in reports),
        "worklist": sum(len(r.get("worklist", ())) for r in reports),
        "skipped": len(skipped_files),
        "excluded": len(tree.excluded),
        "duplicates": len(tree.duplicates),
        "warnings": len(tree.warnings),
        "left_out": left_out,
    }


def python_files(root: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """The `.py` files under `root`, sorted, and the directories that could not be listed."""
    found: list[Path] = []
    unlisted: list[dict[str, str]] = []

    def failed(exc: OSError) -> None:
        unlisted.append({"file": display_name(exc.filename or root),
                         "reason": f"cannot list: {exc.strerror or exc}"})

    for dirpath, dirnames, filenames in os.walk(root, onerror=failed):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in filenames if name.endswith(".py"))
    return sorted(found), unlisted


def analyze_one(path: Path) -> dict[str, Any]:
    """One file of a directory: its document, or why it is skipped; never raises for it."""
    try:
        doc = analyze_readable(path)
    except OSError as exc:
        return skipped(path, f"cannot read: {exc.strerror or exc}")
    except Exception as exc:  # one bad file must not sink the report
        return skipped(path, f"analyser failed: {type(exc).__name__}: {exc}")
    doc["file"] = display_name(path)
    return doc


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def analyze_many(files: Sequence[Path], workers: int | None = None,
                 digests: dict[Path, str] | None = None,
                 sizes: dict[Path, int] | None = None) -> list[dict[str, Any]]:
    """The documents of `files`, in order; files with the same digest analysed once."""
    digests = digests or {}
    sizes = dict(sizes or {})
    for file in files:
        if file not in sizes:
            try:
                sizes[file] = file.stat().st_size
            except OSError:
                sizes[file] = 0
    distinct: dict[str, Path] = {}
    for file in files:
        distinct.setdefault(digests.get(file, f"path:{file}"), file)
    todo = list(distinct.values())
    done = dict(zip(todo, _analyze_all(todo, workers, sizes), strict=True))
    out = []
    for file in files:
        doc = done[distinct[digests.get(file, f"path:{file}")]]
        if doc is not done.get(file):
            doc = {**doc, "file": display_name(file)}
        out.append(doc)
    return out


def _analyze_all(files: list[Path], workers: int | None,
                 sizes: dict[Path, int]) -> Iterable[dict[str, Any]]:
    workers = workers if workers is not None else min(_cpus(), 16)
    if workers > 1 and len(files) >= POOL_MIN_FILES \
            and sum(sizes.get(f, 0) for f in files) >= POOL_MIN_BYTES:
        biggest_first = sorted(files, key=lambda f: -sizes.get(f, 0))
        try:
            # a worker makes only acyclic trees and documents: the cyclic collector would
            # only walk them again and again (it cost 5-10% of the time)
            with ProcessPoolExecutor(max_workers=min(workers, len(files)),
                                     initializer=gc.disable) as pool:
                by_file = dict(zip(biggest_first,
                                   pool.map(analyze_one, biggest_first, chunksize=1),
                                   strict=True))
            return [by_file[f] for f in files]
        except (OSError, BrokenProcessPool, NotImplementedError):
            pass  # no worker processes here (sandbox, no /dev/shm): do it in this one
    enabled = gc.isenabled()
    gc.disable()
    try:
        return [analyze_one(f) for f in files]
    finally:
        if enabled:
            gc.enable()
