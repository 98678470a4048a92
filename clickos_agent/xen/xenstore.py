"""Xenstore: the real one through the xenstore-* tools, and a stateful model.

Both raise ``XenStoreError`` with the errno xenstored answers: ENOENT for a
missing node, EACCES for a node the caller may not write, EINVAL for a bad
path.  ``write_many`` is one transaction (``xenstore-write`` takes several
path/value pairs and writes them in one), so a reader never sees half a config.
``give(path, domid)`` makes a guest the owner of a node (``xenstore-chmod PATH
b<domid>``: read and write), which it needs to write under it.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Iterable
from typing import Protocol

_PATH = re.compile(r"^/[A-Za-z0-9_@/.:-]*$")
MAX_PATH = 3072   # XENSTORE_ABS_PATH_MAX


class XenStoreError(OSError):
    """A xenstore operation failed; ``errno`` says how, as xenstored's answer does."""


def _error(code: int, path: str) -> XenStoreError:
    return XenStoreError(code, f"{os.strerror(code)}: {path}")


class XenStore(Protocol):
    def read(self, path: str) -> str: ...
    def exists(self, path: str) -> bool: ...
    def list(self, path: str) -> list[str]: ...
    def write_many(self, pairs: Iterable[tuple[str, str]]) -> None: ...
    def give(self, path: str, domid: int) -> None: ...
    def rm(self, path: str) -> None: ...


def write(store: XenStore, path: str, value: str) -> None:
    store.write_many([(path, value)])


class XenStoreCli:
    """The real xenstore, through the xenstore-read/write/exists/list/rm tools (dom0)."""

    def _run(self, argv: list[str], path: str) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True)
        except FileNotFoundError:
            raise XenStoreError(errno.ENOSYS, f"{argv[0]} is not installed (not a Xen dom0?)") from None
        if proc.returncode != 0 and argv[0] != "xenstore-exists":
            err = proc.stderr.strip()
            code = errno.EACCES if "ermission" in err else errno.ENOENT if "couldn't" in err else errno.EIO
            raise XenStoreError(code, f"{' '.join(argv[:2])}: {err or 'failed'} ({path})")
        return proc

    def read(self, path: str) -> str:
        return self._run(["xenstore-read", path], path).stdout.rstrip("\n")

    def exists(self, path: str) -> bool:
        return self._run(["xenstore-exists", path], path).returncode == 0

    def list(self, path: str) -> list[str]:
        return self._run(["xenstore-list", path], path).stdout.split()

    def write_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        flat = [item for pair in pairs for item in pair]
        if flat:
            self._run(["xenstore-write", *flat], flat[0])

    def give(self, path: str, domid: int) -> None:
        self._run(["xenstore-chmod", path, f"b{domid}"], path)

    def rm(self, path: str) -> None:
        self._run(["xenstore-rm", path], path)


class XenStoreModel:
    """An in-memory xenstore: a tree of nodes, each with a value, created with its parents.

    ``readonly`` lists subtrees the agent (dom0 tools acting for it) may not
    write, to exercise EACCES; ``writes`` records every transaction for tests
    that check exact keys and order.  Dom0 writes anywhere else; a guest
    (``write_many(..., domid=N)``, for tests playing the guest) writes only
    under nodes it owns, as xenstored enforces.
    """

    def __init__(self, readonly: Iterable[str] = ()) -> None:
        self.nodes: dict[str, str] = {"/": ""}
        self.owners: dict[str, int] = {"/": 0}
        self.readonly = list(readonly)
        self.writes: list[list[tuple[str, str]]] = []

    def _owner(self, path: str) -> int:
        """The owner of a node, or of its nearest existing ancestor (whose rights a new node inherits)."""
        while path not in self.nodes:
            path = path.rsplit("/", 1)[0] or "/"
        return self.owners.get(path, 0)

    def _readonly(self, path: str) -> bool:
        return any(path == ro or path.startswith(ro + "/") for ro in self.readonly)

    @staticmethod
    def _check(path: str) -> str:
        if not _PATH.match(path) or len(path) > MAX_PATH or "//" in path or (path != "/" and path.endswith("/")):
            raise _error(errno.EINVAL, path)
        return path

    def read(self, path: str) -> str:
        if self._check(path) not in self.nodes:
            raise _error(errno.ENOENT, path)
        return self.nodes[path]

    def exists(self, path: str) -> bool:
        return self._check(path) in self.nodes

    def list(self, path: str) -> list[str]:
        if self._check(path) not in self.nodes:
            raise _error(errno.ENOENT, path)
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.nodes if p.startswith(prefix) and p != prefix})

    def write_many(self, pairs: Iterable[tuple[str, str]], domid: int = 0) -> None:
        pairs = list(pairs)
        for path, _ in pairs:   # all or nothing, as a transaction
            self._check(path)
            if self._readonly(path):
                raise _error(errno.EACCES, path)
            if domid != 0 and self._owner(path) != domid:
                raise _error(errno.EACCES, path)
        for path, value in pairs:
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts) + 1):
                node = "/" + "/".join(parts[:depth])
                if node not in self.nodes:
                    self.owners[node] = self._owner(node)
                    self.nodes[node] = ""
            self.nodes[path] = value
        self.writes.append(pairs)

    def give(self, path: str, domid: int) -> None:
        if self._check(path) not in self.nodes:
            raise _error(errno.ENOENT, path)
        self.owners[path] = domid

    def rm(self, path: str) -> None:
        if self._check(path) not in self.nodes:
            raise _error(errno.ENOENT, path)
        if self._readonly(path):
            raise _error(errno.EACCES, path)
        for node in [p for p in self.nodes if p == path or p.startswith(path + "/")]:
            del self.nodes[node]
            self.owners.pop(node, None)
