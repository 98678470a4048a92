"""The agent's instance table on disk: one JSON file, replaced atomically.

A crash (or ``kill -9``) at any moment leaves either the old or the new file,
never a torn one: the new content goes to a temporary file in the same
directory and is renamed over the old one.  A ``durable`` store also fsyncs
the file and the directory, so the new table survives a power loss.

The agent runs non-durable: its table describes namespaces, processes and
domains that do not survive the host going down, so after a power loss any
table (old or new) leads to the same result at restart (nothing is alive:
every instance is released), and each fsync would cost milliseconds on the
boot path.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class StateStore:
    def __init__(self, path: str | os.PathLike[str], durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return json.loads(text)

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=1, sort_keys=True)
                if self.durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.durable:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
