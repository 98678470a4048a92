"""VALE (netmap's software switch): the real one through ``vale-ctl``, and a model.

``vale-ctl -a vale0:vif3.0`` attaches interface vif3.0 to switch vale0 and
``-d`` detaches it.  Errors carry netmap's errno: EEXIST when the port is
already attached, ENOENT when it is not, ENXIO when the interface does not exist.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from typing import Protocol


class ValeError(OSError):
    """A VALE operation failed; ``errno`` says how."""


class Vale(Protocol):
    def attach(self, switch: str, port: str) -> None: ...
    def detach(self, switch: str, port: str) -> None: ...


class ValeCtl:
    """The real VALE switch, through ``vale-ctl`` (netmap's tool)."""

    def _run(self, flag: str, switch: str, port: str) -> None:
        argv = ["vale-ctl", flag, f"{switch}:{port}"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True)
        except FileNotFoundError:
            raise ValeError(errno.ENOSYS, "vale-ctl is not installed (no netmap on this host)") from None
        if proc.returncode != 0:
            err = proc.stderr.strip()
            code = (errno.EEXIST if "exist" in err.lower() else errno.ENXIO if "no such device" in err.lower()
                    else errno.ENOENT if "not found" in err.lower() else errno.EIO)
            raise ValeError(code, f"{' '.join(argv)}: {err or f'exit status {proc.returncode}'}")

    def attach(self, switch: str, port: str) -> None:
        self._run("-a", switch, port)

    def detach(self, switch: str, port: str) -> None:
        self._run("-d", switch, port)


class ValeModel:
    """Switches as sets of attached ports; ``interfaces`` (when given) says which interfaces exist."""

    def __init__(self, interfaces: Callable[[], set[str]] | None = None) -> None:
        self.switches: dict[str, set[str]] = {}
        self.interfaces = interfaces

    def attach(self, switch: str, port: str) -> None:
        if self.interfaces is not None and port not in self.interfaces():
            raise ValeError(errno.ENXIO, f"{os.strerror(errno.ENXIO)}: {port}")
        if any(port in ports for ports in self.switches.values()):
            raise ValeError(errno.EEXIST, f"{os.strerror(errno.EEXIST)}: {port}")
        self.switches.setdefault(switch, set()).add(port)

    def detach(self, switch: str, port: str) -> None:
        if port not in self.switches.get(switch, set()):
            raise ValeError(errno.ENOENT, f"{os.strerror(errno.ENOENT)}: {switch}:{port}")
        self.switches[switch].discard(port)
