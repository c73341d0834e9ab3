"""A path to analyse: one file's document, or a whole tree's reports, summary and totals.

A file gives its document (flat: ``r["risk"]["score"]``). A directory gives
``{"reports", "summary", "totals", "skipped"}``:

* ``reports``: one document per ``.py`` file under it, sorted by path
  (directories whose name starts with ``.``, such as ``.git`` or ``.venv``, and
  ``__pycache__`` are not entered);
* ``summary``: ``{file, score, level, syntax_errors, base_agent}`` per file, by
  score, highest first (``syntax_errors`` is the count, ``base_agent`` whether
  the file has a BaseAgent class);
* ``totals``: ``files`` (analysed), ``unparsable`` (files with syntax errors,
  analysed through the tolerant parser), ``agent_classes`` (BaseAgent classes
  plus legacy ones), ``base_agent_classes``, ``legacy_agent_classes`` (see
  `agents` for the rule) and ``skipped``;
* ``skipped``: ``{file, reason}`` for each file that could not be analysed (not
  text, unreadable) or directory that could not be listed.

Errors (ConfigError, exit 2, printed ``PATH: message``) only for the path
itself: missing, unreadable, or a directory with no ``.py`` file under it.

Speed: many files are analysed in worker processes, one per CPU, biggest
files first so that the last one to finish is a small one. A 300-file, 11 MB
tree, two thirds of it broken, takes about 10 CPU-seconds in all, so about 5 s
on 2 idle cores (`bench/analyze.py`).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from orchestrator.analysis.report import analyze_file, analyze_readable, skipped
from orchestrator.analysis.source import path_error

# Below these, starting worker processes costs more than it saves.
POOL_MIN_FILES = 8
POOL_MIN_BYTES = 512 * 1024


def analyze_path(path: Path) -> dict[str, Any]:
    """A file: its document. A directory: reports, summary, totals and skipped files."""
    path = Path(path)
    if path.is_dir():
        return analyze_directory(path)
    if not path.exists():
        raise path_error(path, "no such file or directory")
    return analyze_file(path)


def analyze_directory(root: Path, workers: int | None = None) -> dict[str, Any]:
    try:
        with os.scandir(root):
            pass
    except OSError as exc:
        raise path_error(root, f"cannot read: {exc.strerror or exc}") from exc
    files, unlisted = python_files(root)
    if not files:
        raise path_error(root, "no .py file in it")
    docs = _analyze_all(files, workers)
    reports = [d for d in docs if "skipped" not in d]
    skipped_files = [{"file": d["file"], "reason": d["skipped"]} for d in docs
                     if "skipped" in d] + unlisted
    summary = sorted(
        ({"file": r["file"], "score": r["risk"]["score"], "level": r["risk"]["level"],
          "syntax_errors": len(r["syntax_errors"]), "base_agent": r["base_agent"]["inherits"]}
         for r in reports),
        key=lambda s: (-s["score"], s["file"]),
    )
    base = sum(len(r["base_agent"]["classes"]) for r in reports)
    legacy = sum(len(r["base_agent"]["legacy_classes"]) for r in reports)
    totals = {
        "files": len(reports),
        "unparsable": sum(1 for r in reports if r["syntax_errors"]),
        "agent_classes": base + legacy,
        "base_agent_classes": base,
        "legacy_agent_classes": legacy,
        "skipped": len(skipped_files),
    }
    return {"reports": reports, "summary": summary, "totals": totals,
            "skipped": skipped_files}


def python_files(root: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """The `.py` files under `root`, sorted, and the directories that could not be listed."""
    found: list[Path] = []
    unlisted: list[dict[str, str]] = []

    def failed(exc: OSError) -> None:
        unlisted.append({"file": str(exc.filename or root),
                         "reason": f"cannot list: {exc.strerror or exc}"})

    for dirpath, dirnames, filenames in os.walk(root, onerror=failed):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        found.extend(Path(dirpath) / name for name in filenames if name.endswith(".py"))
    return sorted(found), unlisted


def analyze_one(path: Path) -> dict[str, Any]:
    """One file of a directory: its document, or why it is skipped; never raises for it."""
    try:
        return analyze_readable(path)
    except OSError as exc:
        return skipped(path, f"cannot read: {exc.strerror or exc}")
    except Exception as exc:  # one bad file must not sink the report
        return skipped(path, f"analyser failed: {type(exc).__name__}: {exc}")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _analyze_all(files: list[Path], workers: int | None) -> list[dict[str, Any]]:
    sizes = {}
    for file in files:
        try:
            sizes[file] = file.stat().st_size
        except OSError:
            sizes[file] = 0
    workers = workers if workers is not None else min(_cpus(), 16)
    if workers > 1 and len(files) >= POOL_MIN_FILES and sum(sizes.values()) >= POOL_MIN_BYTES:
        biggest_first = sorted(files, key=lambda f: -sizes[f])
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(files))) as pool:
                by_file = dict(zip(biggest_first,
                                   pool.map(analyze_one, biggest_first, chunksize=1),
                                   strict=True))
            return [by_file[f] for f in files]
        except (OSError, BrokenProcessPool, NotImplementedError):
            pass  # no worker processes here (sandbox, no /dev/shm): do it in this one
    return [analyze_one(f) for f in files]
