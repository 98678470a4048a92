"""Libvirt: the one module that imports the libvirt binding.

``Hypervisor`` is the small interface the xen backend needs.  The real
implementation talks to ``xen:///system`` (libvirt's libxl driver) on a Xen
host; libvirt's own ``test:///default`` driver is its stateful model (the
tests define, start, destroy and undefine domains there and get libvirt's real
errors).  Errors become ``HypervisorError`` (``NoDomain`` when the domain does
not exist), so nothing above this module sees libvirt types.
"""

from __future__ import annotations

from typing import Any, Protocol


class HypervisorError(RuntimeError):
    """A libvirt call failed; ``code`` is libvirt's error number."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class NoDomain(HypervisorError):
    """No domain by that name (VIR_ERR_NO_DOMAIN)."""


class Hypervisor(Protocol):
    kind: str   # "xen", or "test" for libvirt's test driver (decides the domain XML's type)

    def define(self, xml: str) -> None: ...
    def start(self, name: str) -> int: ...
    def domid(self, name: str) -> int | None: ...
    def destroy(self, name: str) -> None: ...
    def undefine(self, name: str) -> None: ...
    def names(self) -> list[str]: ...


class LibvirtHypervisor:
    def __init__(self, uri: str = "xen:///system") -> None:
        import libvirt

        self._libvirt = libvirt
        # libvirt prints every error on stderr by default; they are raised as exceptions here instead.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            self.conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot connect to {uri}: {exc}", exc.get_error_code()) from None
        self.kind = "test" if uri.startswith("test:") else "xen"

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._libvirt.libvirtError as exc:
            code = exc.get_error_code()
            cls = NoDomain if code == self._libvirt.VIR_ERR_NO_DOMAIN else HypervisorError
            raise cls(f"{what}: {exc}", code) from None

    def _lookup(self, name: str) -> Any:
        return self._call(f"lookup {name}", self.conn.lookupByName, name)

    def define(self, xml: str) -> None:
        self._call("define", self.conn.defineXML, xml)

    def start(self, name: str) -> int:
        """Boot a defined domain; its domain id."""
        dom = self._lookup(name)
        self._call(f"start {name}", dom.create)
        return dom.ID()

    def domid(self, name: str) -> int | None:
        """The id of a running domain, None when it is defined but not running."""
        dom = self._lookup(name)
        return dom.ID() if self._call(f"state of {name}", dom.isActive) else None

    def destroy(self, name: str) -> None:
        """Power a domain off (not an error when it is not running)."""
        dom = self._lookup(name)
        if self._call(f"state of {name}", dom.isActive):
            self._call(f"destroy {name}", dom.destroy)

    def undefine(self, name: str) -> None:
        self._call(f"undefine {name}", self._lookup(name).undefine)

    def names(self) -> list[str]:
        return sorted(dom.name() for dom in self._call("list domains", self.conn.listAllDomains))
