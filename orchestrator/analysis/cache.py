"""Documents cached by content, so that re-reading unchanged source costs nothing.

The `analyze` metric source reads the same files every poll (a precondition, a
`check:` step, a trigger). A file's document depends on its bytes only (and its
name, which is relabelled), so documents are kept by the digest of the bytes, and
digests by what ``stat`` says of the file (device, inode, size, mtime and ctime in
nanoseconds): an unchanged file is one ``stat`` and two dictionary look-ups, no
read, no hash, no parse. A changed file is read and hashed; if its bytes are ones
already seen (a revert, a copy), the document is still not recomputed.

A tree is listed again at each read (new and removed files count), but only the
files whose ``stat`` changed are read. Remote trees (`from:` a host) give their
digests from the host; only documents for digests not seen yet are fetched.

Bounded: at most `MAX_DOCUMENTS` documents (least recently used go first).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.analysis.directory import (
    Exclusions,
    Tree,
    analyze_many,
    assemble,
    display_name,
    file_digest,
    select_readable,
)
from orchestrator.analysis.report import analyze_bytes

MAX_DOCUMENTS = 2048
StatKey = tuple[int, int, int, int, int]


def _stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DocumentCache:
    """Documents by content digest, digests by stat; thread-safe."""

    def __init__(self, max_documents: int = MAX_DOCUMENTS) -> None:
        self.max_documents = max_documents
        self._docs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._digests: dict[str, tuple[StatKey, str, int]] = {}
        self._lock = threading.Lock()
        self.analysed = 0  # documents computed (for tests and the benchmark)

    # -- digests

    def digest(self, path: Path) -> tuple[str, int]:
        """(digest, size) of a local file, without reading it when its stat is unchanged."""
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        key = _stat_key(st)
        name = os.fspath(path)
        with self._lock:
            known = self._digests.get(name)
        if known is not None and known[0] == key:
            return known[1], known[2]
        digest, size = file_digest(path)
        with self._lock:
            self._digests[name] = (key, digest, size)
        return digest, size

    # -- documents

    def cached(self, digest: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs.get(digest)
            if doc is not None:
                self._docs.move_to_end(digest)
            return doc

    def document(self, digest: str, name: str, read: Callable[[], bytes]) -> dict[str, Any]:
        """The document of the content `digest`, labelled `name`; `read()` gives the bytes
        only when the content was never analysed."""
        doc = self.cached(digest)
        if doc is None:
            doc = analyze_bytes(name, read())
            self.store(digest, doc)
        return doc if doc.get("file") == name else {**doc, "file": name}

    def file(self, path: Path) -> dict[str, Any]:
        """A local file's document (OSError if it cannot be read)."""
        digest, _ = self.digest(path)
        return self.document(digest, display_name(path), Path(path).read_bytes)

    def tree(self, root: Path, exclusions: Exclusions | None = None) -> dict[str, Any]:
        """A local directory's result, as `analyze_path` gives it, from cached documents."""
        tree = select_readable(Path(root), exclusions or Exclusions(), self.digest)
        missing = [p for p in tree.files if self.cached(tree.digests[p]) is None]
        if len(missing) > 1:  # the first read of a tree: worker processes, as analyze does
            for path, doc in zip(missing, analyze_many(missing, None, tree.digests, tree.sizes),
                                 strict=True):
                if "skipped" not in doc or not doc["skipped"].startswith("cannot read"):
                    self.store(tree.digests[path], doc)
        return self.assemble(tree, lambda path: Path(path).read_bytes())

    def store(self, digest: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self.analysed += 1
            self._docs[digest] = doc
            while len(self._docs) > self.max_documents:
                self._docs.popitem(last=False)

    def assemble(self, tree: Tree, read: Callable[[Path], bytes]) -> dict[str, Any]:
        docs = []
        for path in tree.files:
            try:
                docs.append(self.document(tree.digests[path], display_name(path),
                                          lambda p=path: read(p)))  # type: ignore[misc]
            except OSError as exc:
                docs.append({"file": display_name(path),
                             "skipped": f"cannot read: {exc.strerror or exc}"})
        return assemble(tree, docs)


_shared: DocumentCache | None = None
_shared_lock = threading.Lock()


def shared_cache() -> DocumentCache:
    """The process's cache (one per process: every metric and poll share it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DocumentCache()
        return _shared
