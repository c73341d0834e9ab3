"""Two revisions of agent source, compared: `migrate analyze PATH --against OLD_PATH`.

``{"changes": [{"file", "status", "before", "after", "removed", "added"}], "totals"}``:
one entry per file present on either side (files paired by their path relative
to PATH and OLD_PATH; two files are paired with each other). ``before`` and
``after`` are ``{"sockets", "zmq", "raw", "threads", "syntax_errors", "score",
"level", "worklist"}`` or null for a side the file is not on (or could not be
analysed there: then ``before_skipped``/``after_skipped`` say why). ``removed``
are the worklist sites (see `sites`) of the old revision that the new one no
longer has, with their old lines; ``added`` the new ones, with their new lines.
``status``: ``added``, ``removed``, ``unchanged`` (same bytes) or ``changed``.

Sites are matched by what they are, not by their line, since lines move when code
is edited above them: two sites are the same when their kind and ``what`` are
(``zmq.REP bind tcp://*:5570 (self.socket)``). Among sites that are the same, the
order in the file pairs them first (a longest common subsequence, difflib's),
then, for what is left, the nearest line. So moving a method moves its sites
without a removal and an addition; deleting one of two identical sites removes one.

Exclusions apply to both sides alike. Files with the same bytes on both sides are
analysed once.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from orchestrator.analysis.directory import (
    Exclusions,
    analyze_many,
    display_name,
    select_readable,
)
from orchestrator.analysis.source import path_error


def counts(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None or "skipped" in doc:
        return None
    return {"sockets": doc["sockets"]["count"], "zmq": doc["sockets"]["zmq"],
            "raw": doc["sockets"]["raw"], "threads": doc["threads"]["count"],
            "syntax_errors": len(doc["syntax_errors"]), "score": doc["risk"]["score"],
            "level": doc["risk"]["level"], "worklist": len(doc.get("worklist", ()))}


def match_sites(old: list[dict[str, Any]], new: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(removed, added, kept): `old` and `new` sites matched by kind and what."""
    old_keys = [(s["kind"], s["what"]) for s in old]
    new_keys = [(s["kind"], s["what"]) for s in new]
    matcher = difflib.SequenceMatcher(None, old_keys, new_keys, autojunk=False)
    old_left = set(range(len(old)))
    new_left = set(range(len(new)))
    kept = 0
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            old_left.discard(block.a + k)
            new_left.discard(block.b + k)
            kept += 1
    # what is left: the same site moved past others; pair by nearest line
    pairs = sorted((abs(old[i]["line"] - new[j]["line"]), i, j)
                    for i in old_left for j in new_left if old_keys[i] == new_keys[j])
    for _, i, j in pairs:
        if i in old_left and j in new_left:
            old_left.discard(i)
            new_left.discard(j)
            kept += 1
    return [old[i] for i in sorted(old_left)], [new[j] for j in sorted(new_left)], kept


def change(name: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
           same_bytes: bool = False) -> dict[str, Any]:
    old_sites = before.get("worklist", []) if before and "skipped" not in before else []
    new_sites = after.get("worklist", []) if after and "skipped" not in after else []
    removed: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    kept = len(new_sites)
    if not same_bytes:  # the same content has the same sites
        removed, added, kept = match_sites(old_sites, new_sites)
    status = "added" if before is None else "removed" if after is None \
        else "unchanged" if same_bytes else "changed"
    entry: dict[str, Any] = {"file": name, "status": status, "before": counts(before),
                             "after": counts(after), "removed": removed, "added": added,
                             "kept": kept}
    for side, doc in (("before", before), ("after", after)):
        if doc is not None and "skipped" in doc:
            entry[f"{side}_skipped"] = doc["skipped"]
    return entry


def compare_paths(new: Path, old: Path, exclude: tuple[str, ...] = (), all_files: bool = False,
                  workers: int | None = None) -> dict[str, Any]:
    """The changes from `old` to `new` (both files, or both directories)."""
    new, old = Path(new), Path(old)
    for path in (new, old):
        if not path.exists() and not path.is_symlink():
            raise path_error(path, "no such file or directory")
    if new.is_dir() != old.is_dir():
        raise path_error(old, f"is a {'directory' if old.is_dir() else 'file'} and "
                         f"{new} is not: compare a file with a file, a directory with a "
                         f"directory")
    if not new.is_dir():
        docs = analyze_many([old, new], workers)
        same = _same_bytes(old, new)
        changes = [change(display_name(new), docs[0], docs[1], same)]
        return {"changes": changes, "totals": _totals(changes)}
    exclusions = Exclusions(tuple(exclude), all_files)
    new_tree = select_readable(new, exclusions)
    old_tree = select_readable(old, exclusions)
    new_by_rel = {new_tree.rel(p): p for p in new_tree.kept}
    old_by_rel = {old_tree.rel(p): p for p in old_tree.kept}
    files = [*old_by_rel.values(), *new_by_rel.values()]
    digests = {**old_tree.digests, **new_tree.digests}
    sizes = {**old_tree.sizes, **new_tree.sizes}
    by_path = dict(zip(files, analyze_many(files, workers, digests, sizes), strict=True))
    changes = []
    for rel in sorted(set(new_by_rel) | set(old_by_rel)):
        before_path, after_path = old_by_rel.get(rel), new_by_rel.get(rel)
        same = before_path is not None and after_path is not None \
            and digests[before_path] == digests[after_path]
        changes.append(change(display_name(rel),
                              by_path[before_path] if before_path else None,
                              by_path[after_path] if after_path else None, same))
    return {"changes": changes, "totals": _totals(changes),
            "skipped": {"before": old_tree.skipped, "after": new_tree.skipped},
            "excluded": {"before": len(old_tree.excluded), "after": len(new_tree.excluded)}}


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _totals(changes: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"files": len(changes)}
    for status in ("changed", "added", "removed", "unchanged"):
        out[status] = sum(1 for c in changes if c["status"] == status)
    for side in ("before", "after"):
        present = [c[side] for c in changes if c[side] is not None]
        out[side] = {key: sum(p[key] for p in present)
                     for key in ("sockets", "threads", "syntax_errors", "worklist")}
        out[side]["score"] = max((p["score"] for p in present), default=0)
    out["sites_removed"] = sum(len(c["removed"]) for c in changes)
    out["sites_added"] = sum(len(c["added"]) for c in changes)
    return out
